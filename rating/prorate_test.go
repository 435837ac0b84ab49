package rating

import (
	"strings"
	"testing"
	"time"
)

func TestProrationFraction(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	syd, _ := time.LoadLocation("Australia/Sydney")
	d := func(loc *time.Location, y int, m time.Month, day, h int) time.Time {
		return time.Date(y, m, day, h, 0, 0, 0, loc)
	}
	tests := []struct {
		name         string
		period, part Interval
		loc          *time.Location
		want         Fraction
	}{
		// March 2026 in New York has 31 days but 743 hours (DST starts Mar 8).
		{"DST spring month, second half", Interval{d(ny, 2026, 3, 1, 0), d(ny, 2026, 4, 1, 0)}, Interval{d(ny, 2026, 3, 16, 0), d(ny, 2026, 4, 1, 0)}, ny, Fraction{16, 31}},
		{"DST day counts as one day", Interval{d(ny, 2026, 3, 1, 0), d(ny, 2026, 4, 1, 0)}, Interval{d(ny, 2026, 3, 8, 0), d(ny, 2026, 3, 9, 0)}, ny, Fraction{1, 31}},
		{"DST autumn month", Interval{d(ny, 2026, 11, 1, 0), d(ny, 2026, 12, 1, 0)}, Interval{d(ny, 2026, 11, 1, 0), d(ny, 2026, 11, 2, 0)}, ny, Fraction{1, 30}},
		{"February non leap", Interval{d(ny, 2026, 2, 1, 0), d(ny, 2026, 3, 1, 0)}, Interval{d(ny, 2026, 2, 15, 0), d(ny, 2026, 3, 1, 0)}, ny, Fraction{14, 28}},
		{"February leap", Interval{d(ny, 2028, 2, 1, 0), d(ny, 2028, 3, 1, 0)}, Interval{d(ny, 2028, 2, 15, 0), d(ny, 2028, 3, 1, 0)}, ny, Fraction{15, 29}},
		{"change mid-day belongs to the new interval", Interval{d(ny, 2026, 1, 1, 0), d(ny, 2026, 2, 1, 0)}, Interval{d(ny, 2026, 1, 10, 14), d(ny, 2026, 2, 1, 0)}, ny, Fraction{22, 31}},
		{"same instant, other zone, other day", Interval{d(syd, 2026, 1, 1, 0), d(syd, 2026, 2, 1, 0)}, Interval{d(time.UTC, 2026, 1, 9, 14), d(syd, 2026, 2, 1, 0)}, syd, Fraction{22, 31}}, // Jan 9 14:00 UTC is Jan 10 in Sydney
		{"anniversary period", Interval{d(ny, 2026, 1, 15, 9), d(ny, 2026, 2, 15, 9)}, Interval{d(ny, 2026, 1, 15, 9), d(ny, 2026, 2, 15, 9)}, ny, Fraction{31, 31}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ProrationFraction(tt.period, tt.part, tt.loc)
			if err != nil || got != tt.want {
				t.Fatalf("= %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestProrationTiles: splitting a period at any instant gives two
// fractions that add up to the whole, so nothing is billed twice or lost.
func TestProrationTiles(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	period := Interval{time.Date(2026, 3, 1, 0, 0, 0, 0, ny), time.Date(2026, 4, 1, 0, 0, 0, 0, ny)}
	for at := period.Start; at.Before(period.End); at = at.Add(97 * time.Minute) {
		a, err1 := ProrationFraction(period, Interval{period.Start, at}, ny)
		b, err2 := ProrationFraction(period, Interval{at, period.End}, ny)
		if err1 != nil || err2 != nil || a.Num+b.Num != a.Den || a.Den != 31 {
			t.Fatalf("split at %s: %v + %v (%v %v)", at, a, b, err1, err2)
		}
	}
}

func TestProrate(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	period := Interval{time.Date(2026, 3, 1, 0, 0, 0, 0, ny), time.Date(2026, 4, 1, 0, 0, 0, 0, ny)}
	part := Interval{time.Date(2026, 3, 22, 0, 0, 0, 0, ny), period.End}
	for _, tt := range []struct{ amount, cur, want string }{
		{"49.00", "USD", "15.81"},  // 49 × 10/31 = 15.806…
		{"1000", "JPY", "323"},     // 322.58…
		{"12.345", "KWD", "3.982"}, // 3.98225…
		{"0.31", "USD", "0.10"},    // exactly 0.1
		{"0.155", "USD", "0.05"},   // 0.05 exactly
	} {
		cur, _ := LookupCurrency(tt.cur)
		got, f, err := Prorate(&MustNumber(tt.amount).Decimal, cur, period, part, ny)
		if err != nil || got.Text('f') != tt.want || f != (Fraction{10, 31}) {
			t.Errorf("Prorate(%s %s) = %s %v %v, want %s", tt.amount, tt.cur, got.Text('f'), f, err, tt.want)
		}
	}
	// Half-up at the exact midpoint: 0.05 × 1/2 = 0.025 → 0.03.
	usd, _ := LookupCurrency("USD")
	jan := Interval{time.Date(2026, 1, 1, 0, 0, 0, 0, ny), time.Date(2026, 1, 3, 0, 0, 0, 0, ny)}
	got, _, err := Prorate(&MustNumber("0.05").Decimal, usd, jan, Interval{jan.Start, jan.Start.AddDate(0, 0, 1)}, ny)
	if err != nil || got.Text('f') != "0.03" {
		t.Errorf("midpoint = %s %v, want 0.03", got.Text('f'), err)
	}
	for _, bad := range []struct {
		period, part Interval
		loc          *time.Location
		want         string
	}{
		{period, part, nil, "time zone is required"},
		{Interval{period.End, period.Start}, part, ny, "is not before its end"},
		{period, Interval{period.Start.Add(-time.Hour), period.End}, ny, "not inside the period"},
		{Interval{period.Start, period.Start.Add(time.Hour)}, Interval{period.Start, period.Start}, ny, "shorter than one calendar day"},
	} {
		if _, err := ProrationFraction(bad.period, bad.part, bad.loc); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("err = %v, want %q", err, bad.want)
		}
	}
}

func TestSummarizeCommitmentAndDiscounts(t *testing.T) {
	usd, _ := LookupCurrency("USD")
	rate := func(file, q string) *Result {
		p := loadExample(t, file)
		var u Usage
		u.Quantity.Set(&MustNumber(q).Decimal)
		r := new(Result)
		if err := p.Rate(&u, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b := rate("graduated.json", "6"), rate("volume.json", "6") // 41.50 + 39.00
	inv, err := Summarize(&SummarizeInput{Currency: usd, Commitment: MustNumber("100"),
		Discounts: []Discount{{Percent: MustNumber("10")}}, Charges: []*Result{a, b}})
	if err != nil {
		t.Fatal(err)
	}
	if inv.Total.Text('f') != "90.00" || len(inv.Lines) != 2 || inv.Lines[0].Kind != LineCommitment || inv.Lines[0].Amount.Text('f') != "19.50" {
		t.Fatalf("invoice total %s lines %+v", inv.Total.Text('f'), inv.Lines)
	}
	eur := rate("package.json", "1")
	_, err = Summarize(&SummarizeInput{Currency: usd, Charges: []*Result{a, eur}})
	if err == nil || !strings.Contains(err.Error(), "charges[1]: is in EUR, the invoice is in USD") {
		t.Fatalf("err = %v", err)
	}
}

func TestRateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	p, err := ParsePrice([]byte(tenTier))
	if err != nil {
		t.Fatal(err)
	}
	var u Usage
	u.Quantity.SetString("1234567.123456789012")
	var out Result
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.Rate(&u, &out); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Rate allocates %v times per call", allocs)
	}
}
