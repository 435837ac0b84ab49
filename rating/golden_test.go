package rating

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// goldenCase is one entry of testdata/cases.json. Totals and lines are
// asserted to the minor unit here; the golden file additionally pins the
// whole breakdown (review its diff after -update).
type goldenCase struct {
	Name           string   `json:"name"`
	Source         string   `json:"source"` // where a published example comes from
	PriceFile      string   `json:"price_file"`
	Quantity       string   `json:"quantity"`
	Events         int64    `json:"events"`
	Amount         string   `json:"amount"`
	AmountCurrency string   `json:"amount_currency"`
	EventAmounts   []string `json:"event_amounts"`
	Fraction       string   `json:"fraction"`
	Want           string   `json:"want"`
	Lines          []string `json:"lines"` // "kind amount", in order
	Error          string   `json:"error"`
}

func loadExample(t testing.TB, name string) *Price {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "docs", "examples", "prices", name))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePrice(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}

func TestGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			p := loadExample(t, c.PriceFile)
			u := Usage{Events: c.Events, AmountCurrency: p.Currency().Code}
			if c.AmountCurrency != "" {
				u.AmountCurrency = c.AmountCurrency
			}
			u.Quantity.Set(&MustNumber(or(c.Quantity, "0")).Decimal)
			u.Amount.Set(&MustNumber(or(c.Amount, "0")).Decimal)
			for _, a := range c.EventAmounts {
				u.EventAmounts = append(u.EventAmounts, MustNumber(a).Decimal)
			}
			if c.Fraction != "" {
				var f Fraction
				fmt.Sscanf(c.Fraction, "%d/%d", &f.Num, &f.Den)
				u.Proration = &f
			}
			var out Result
			err := p.Rate(&u, &out)
			if c.Error != "" {
				if err == nil || !strings.Contains(err.Error(), c.Error) {
					t.Fatalf("error = %v, want one containing %q", err, c.Error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Total.Text('f'); got != c.Want {
				t.Errorf("total = %s, want %s", got, c.Want)
			}
			if c.Lines != nil {
				var got []string
				for _, l := range out.Lines {
					got = append(got, string(l.Kind)+" "+l.Amount.Text('f'))
				}
				if strings.Join(got, "; ") != strings.Join(c.Lines, "; ") {
					t.Errorf("lines = %q, want %q", got, c.Lines)
				}
			}
			checkTotalIsSumOfLines(t, &out)
			var buf bytes.Buffer
			if c.Source != "" {
				fmt.Fprintf(&buf, "source: %s\n", c.Source)
			}
			fmt.Fprintf(&buf, "price: %s, usage: quantity=%s amount=%s events=%d fraction=%s\n\n",
				c.PriceFile, c.Quantity, c.Amount, c.Events, c.Fraction)
			if err := out.WriteTable(&buf); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "golden", c.Name+".golden"), buf.Bytes())
		})
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./rating/ -update and review the new file)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update and review the diff):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
