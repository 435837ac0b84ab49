package rating

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Model names a pricing model. The JSON format is documented, with an
// example of each model, in docs/pricing.md.
type Model string

// The pricing models.
const (
	Flat                Model = "flat"                 // a fixed amount per period
	PerUnit             Model = "per_unit"             // quantity × unit_price, optional package transform
	Graduated           Model = "graduated"            // each tier prices the units inside it
	Volume              Model = "volume"               // the tier the total falls in prices all units
	Package             Model = "package"              // package_price per started block of package_size
	Percentage          Model = "percentage"           // rate × summed amount + fixed fee per event
	GraduatedPercentage Model = "graduated_percentage" // tiered rates on a summed amount
)

// CurrentVersion is the only definition format version this package reads.
const CurrentVersion = 1

// Definition is a price definition as written in JSON. Read it with
// ParseDefinition, check it with Validate, and turn it into a ready-to-rate
// Price with Compile. Optional numbers are pointers: nil means absent.
type Definition struct {
	Version  int    `json:"version"`
	Currency string `json:"currency"`
	Model    Model  `json:"model"`
	Name     string `json:"name,omitempty"`
	Unit     string `json:"unit,omitempty"` // display only, e.g. "call"

	Amount       *Number    `json:"amount,omitempty"`        // flat
	UnitPrice    *Number    `json:"unit_price,omitempty"`    // per_unit
	Package      *Transform `json:"package,omitempty"`       // per_unit
	PackageSize  *Number    `json:"package_size,omitempty"`  // package
	PackagePrice *Number    `json:"package_price,omitempty"` // package
	Tiers        []Tier     `json:"tiers,omitempty"`         // graduated, volume, graduated_percentage

	// percentage (Rate is in percent: "2.9" is 2.9 %)
	Rate       *Number `json:"rate,omitempty"`
	FixedFee   *Number `json:"fixed_fee,omitempty"`   // per event
	MinFee     *Number `json:"min_fee,omitempty"`     // per event
	MaxFee     *Number `json:"max_fee,omitempty"`     // per event
	FreeAmount *Number `json:"free_amount,omitempty"` // of summed amount, not charged
	FreeEvents *int64  `json:"free_events,omitempty"` // events without fixed fee

	// modifiers, any usage model
	FreeUnits *Number    `json:"free_units,omitempty"` // included quantity
	Minimum   *Number    `json:"minimum,omitempty"`    // per period; a true-up line tops up to it
	Maximum   *Number    `json:"maximum,omitempty"`    // per period; a cap line brings it down
	Discounts []Discount `json:"discounts,omitempty"`  // applied in order, after minimum/maximum
}

// Transform turns a quantity into whole packages before pricing:
// quantity/divide_by rounded up (every started package is billed) or down.
type Transform struct {
	DivideBy *Number `json:"divide_by"`
	Round    string  `json:"round"` // "up" or "down"
}

// Tier is one tier of a tiered price. A tier covers quantities above the
// previous tier's up_to (0 for the first) up to and including its own up_to;
// the last tier omits up_to (open). From is optional and, when present,
// must equal the previous up_to: it exists so that hand-written definitions
// that state both bounds get gaps and overlaps reported.
type Tier struct {
	From      *Number `json:"from,omitempty"`
	UpTo      *Number `json:"up_to,omitempty"`
	UnitPrice *Number `json:"unit_price,omitempty"` // graduated, volume
	Rate      *Number `json:"rate,omitempty"`       // graduated_percentage, in percent
	FlatPrice *Number `json:"flat_price,omitempty"` // charged once when the tier is reached
}

// Discount reduces a charge (or, through Summarize, an invoice) by a percent
// of it or by a fixed amount. Exactly one of Percent and Amount is set. A
// discount never takes a total below zero.
type Discount struct {
	Description string  `json:"description,omitempty"`
	Percent     *Number `json:"percent,omitempty"`
	Amount      *Number `json:"amount,omitempty"`
}

// ParseDefinition decodes a JSON price definition. Unknown fields are an
// error (a misspelt "minimun" must not silently vanish). It does not
// validate; call Validate or Compile.
func ParseDefinition(data []byte) (*Definition, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var d Definition
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("price definition: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("price definition: trailing data after the JSON object")
	}
	return &d, nil
}

// Problem is one thing wrong with a definition, at a JSON path such as
// "tiers[2].up_to".
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// ValidationError lists every problem found in a definition.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "invalid price definition (%d problem", len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString(")")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}
