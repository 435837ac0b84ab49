package rating

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string // every problem, in order
	}{
		{"tiers", `{"version":1,"currency":"USD","model":"graduated","tiers":[
			{"up_to":100,"unit_price":"0.1"},
			{"up_to":1000,"unit_price":"-0.2"},
			{"up_to":1000,"unit_price":"0.0000000000001"},
			{"from":900,"up_to":2000,"unit_price":"0.1"},
			{"from":2500,"up_to":3000,"unit_price":"0.1"},
			{"unit_price":"0.1","up_to":5000}]}`,
			[]string{
				"tiers[1].unit_price: must not be negative (got -0.2)",
				"tiers[2].unit_price: has 13 decimal places, at most 12 are allowed",
				"tiers[2].up_to: must be greater than tiers[1].up_to (1000)",
				"tiers[3].from: overlaps the previous tier: must equal tiers[2].up_to (1000), got 900",
				"tiers[4].from: leaves a gap: must equal tiers[3].up_to (2000), got 2500",
				"tiers[5].up_to: must be omitted: the last tier is open so that every quantity has a price",
			}},
		{"open tier not last", `{"version":1,"currency":"USD","model":"volume","tiers":[{"unit_price":"1"},{"unit_price":"2"}]}`,
			[]string{"tiers[0].up_to: is required: only the last tier may be open"}},
		{"header", `{"version":2,"currency":"XYZ","model":"tiered"}`,
			[]string{
				"version: must be 1 (got 2)",
				`currency: unknown currency "XYZ" (want an active ISO 4217 code such as USD)`,
				`model: unknown model "tiered" (want flat, per_unit, graduated, volume, package, percentage or graduated_percentage)`,
			}},
		{"missing", `{"version":1,"currency":"USD","model":"per_unit"}`, []string{"unit_price: is required"}},
		{"modifiers", `{"version":1,"currency":"JPY","model":"per_unit","unit_price":"1","minimum":"10.5","maximum":"5",
			"discounts":[{"percent":"120"},{},{"percent":"5","amount":"1"}],"package":{"divide_by":"2.5","round":"sideways"}}`,
			[]string{
				"package.divide_by: must be a whole number between 1 and 10^18 (got 2.5)",
				`package.round: must be "up" or "down" (got "sideways")`,
				"minimum: has 1 decimal places, JPY allows 0",
				"maximum: must be at least minimum (10.5)",
				"discounts[0].percent: must be a percent between greater than 0 and 100 (got 120)",
				"discounts[1]: needs percent or amount",
				"discounts[2]: set either percent or amount, not both",
			}},
		{"wrong fields for model", `{"version":1,"currency":"USD","model":"flat","amount":"1","unit_price":"2","free_units":"3"}`,
			[]string{`unit_price: is not used by model "flat"`, `free_units: is not used by model "flat"`}},
		{"percentage", `{"version":1,"currency":"USD","model":"percentage","rate":"2.12345678901","min_fee":"5","max_fee":"1","free_amount":"10"}`,
			[]string{
				"rate: has 11 decimal places, at most 10 are allowed for a percent",
				"max_fee: must be at least min_fee (5)",
				"free_amount: cannot be combined with min_fee or max_fee (per-event fees have no share of a free amount)",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDefinition([]byte(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			err = d.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseDefinitionRejectsUnknownFieldsAndReadsLiterals(t *testing.T) {
	if _, err := ParseDefinition([]byte(`{"version":1,"currency":"USD","model":"flat","amount":"1","minimun":"5"}`)); err == nil || !strings.Contains(err.Error(), "minimun") {
		t.Fatalf("err = %v, want unknown field minimun", err)
	}
	// 0.1 as a JSON number must be exactly one tenth, not a float.
	p, err := ParsePrice([]byte(`{"version":1,"currency":"USD","model":"per_unit","unit_price":0.1}`))
	if err != nil {
		t.Fatal(err)
	}
	var u Usage
	u.Quantity.SetString("3")
	var out Result
	if err := p.Rate(&u, &out); err != nil {
		t.Fatal(err)
	}
	if e := out.Lines[0].Exact(); e.Text('f') != "0.3" {
		t.Fatalf("exact = %s, want 0.3", e.Text('f'))
	}
	for _, bad := range []string{`"NaN"`, `"Infinity"`, `"1.2.3"`, `true`} {
		if _, err := ParseDefinition([]byte(`{"version":1,"currency":"USD","model":"flat","amount":` + bad + `}`)); err == nil {
			t.Errorf("amount %s accepted", bad)
		}
	}
}

func TestCurrencyTable(t *testing.T) {
	for code, want := range map[string]int{"JPY": 0, "USD": 2, "EUR": 2, "KWD": 3, "BHD": 3, "CLF": 4, "usd": 2} {
		c, err := LookupCurrency(code)
		if err != nil || c.Exponent != want {
			t.Errorf("%s: %v %v, want exponent %d", code, c, err, want)
		}
	}
	for _, code := range []string{"XAU", "XXX", "HRK", ""} {
		if _, err := LookupCurrency(code); err == nil {
			t.Errorf("%q accepted", code)
		}
	}
	if len(iso4217) < 150 {
		t.Errorf("only %d currencies", len(iso4217))
	}
}
