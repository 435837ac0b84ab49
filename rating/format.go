package rating

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// label describes a step for people, e.g. "tier 2 (1000, 2000]".
func (s *Step) label() string {
	switch s.Kind {
	case StepTier:
		from, up := s.From(), s.UpTo()
		if s.Open {
			return fmt.Sprintf("tier %d (above %s)", s.Tier+1, from.Text('f'))
		}
		return fmt.Sprintf("tier %d (%s, %s]", s.Tier+1, from.Text('f'), up.Text('f'))
	case StepFreeUnits:
		return "free"
	case StepFixedFees:
		return "fixed fees (events)"
	case StepEventClamp:
		return "per-event min/max"
	}
	return string(s.Kind)
}

func (l *Line) label() string {
	if l.Description != "" {
		return string(l.Kind) + ": " + l.Description
	}
	return string(l.Kind)
}

// WriteTable writes the breakdown and lines of r as an aligned text table
// ending with the total. It returns the first write error.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "step\tquantity\tunit price\tflat\tamount\t\n")
	for i := range r.Steps {
		s := &r.Steps[i]
		q, u, f, a := s.Quantity(), s.UnitPrice(), s.FlatPrice(), s.Amount()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", s.label(), q.Text('f'), u.Text('f'), f.Text('f'), a.Text('f'))
	}
	fmt.Fprintf(tw, "\t\t\t\t\t\n")
	for i := range r.Lines {
		l := &r.Lines[i]
		fmt.Fprintf(tw, "%s\t\t\t\t%s\t\n", l.label(), l.Amount.Text('f'))
	}
	fmt.Fprintf(tw, "total %s\t\t\t\t%s\t\n", r.Currency.Code, r.Total.Text('f'))
	return tw.Flush()
}

type jsonStep struct {
	Kind      StepKind `json:"kind"`
	Tier      *int     `json:"tier,omitempty"` // 1-based, as people count tiers
	From      string   `json:"from,omitempty"`
	UpTo      string   `json:"up_to,omitempty"`
	Quantity  string   `json:"quantity"`
	UnitPrice string   `json:"unit_price"`
	FlatPrice string   `json:"flat_price"`
	Amount    string   `json:"amount"`
}

type jsonLine struct {
	Kind        LineKind `json:"kind"`
	Description string   `json:"description,omitempty"`
	Amount      string   `json:"amount"`
	Exact       string   `json:"exact"`
}

// MarshalJSON renders the result with every number as a JSON string (exact
// decimal text, never a float): currency, model, steps, lines, total.
func (r *Result) MarshalJSON() ([]byte, error) {
	out := struct {
		Currency string     `json:"currency"`
		Model    Model      `json:"model"`
		Steps    []jsonStep `json:"steps"`
		Lines    []jsonLine `json:"lines"`
		Total    string     `json:"total"`
	}{Currency: r.Currency.Code, Model: r.Model, Total: r.Total.Text('f')}
	for i := range r.Steps {
		s := &r.Steps[i]
		q, u, f, a := s.Quantity(), s.UnitPrice(), s.FlatPrice(), s.Amount()
		js := jsonStep{Kind: s.Kind, Quantity: q.Text('f'), UnitPrice: u.Text('f'), FlatPrice: f.Text('f'), Amount: a.Text('f')}
		if s.Kind == StepTier {
			n := s.Tier + 1
			from := s.From()
			js.Tier, js.From = &n, from.Text('f')
			if !s.Open {
				up := s.UpTo()
				js.UpTo = up.Text('f')
			}
		}
		out.Steps = append(out.Steps, js)
	}
	for i := range r.Lines {
		l := &r.Lines[i]
		e := l.Exact()
		out.Lines = append(out.Lines, jsonLine{Kind: l.Kind, Description: l.Description, Amount: l.Amount.Text('f'), Exact: e.Text('f')})
	}
	return json.Marshal(out)
}
