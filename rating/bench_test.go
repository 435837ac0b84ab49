package rating

import (
	"testing"
)

const tenTier = `{"version":1,"currency":"USD","model":"graduated","tiers":[
 {"up_to":1000,"unit_price":"0.123456789012","flat_price":"5"},
 {"up_to":2000,"unit_price":"0.11"},{"up_to":3000,"unit_price":"0.1"},
 {"up_to":4000,"unit_price":"0.09"},{"up_to":5000,"unit_price":"0.08"},
 {"up_to":6000,"unit_price":"0.07"},{"up_to":7000,"unit_price":"0.06"},
 {"up_to":8000,"unit_price":"0.05"},{"up_to":9000,"unit_price":"0.04"},
 {"unit_price":"0.030000000001"}]}`

// BenchmarkRateGraduated10 rates one customer-meter pair against a 10-tier
// graduated price, reaching the last tier (the worst case), reusing one
// Result as the API intends. Reported in docs/BENCHMARKS.md.
func BenchmarkRateGraduated10(b *testing.B) {
	p, err := ParsePrice([]byte(tenTier))
	if err != nil {
		b.Fatal(err)
	}
	var u Usage
	u.Quantity.SetString("1234567.123456789012")
	var out Result
	if err := p.Rate(&u, &out); err != nil {
		b.Fatal(err)
	}
	if got := out.Total.String(); got != "37495.47" {
		b.Fatalf("total %s", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Rate(&u, &out); err != nil {
			b.Fatal(err)
		}
	}
}
