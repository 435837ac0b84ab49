package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/abacus-billing/abacus/rating"
	"github.com/cockroachdb/apd/v3"
)

const rateUsage = `usage: abacus rate --price PRICE.json [--quantity Q] [--events N] [--amount A]
                   [--event-amounts A1,A2,...] [--period-fraction F] [--json]

Prices usage with a price definition (docs/pricing.md) and prints the amount
with its breakdown. Numbers are exact decimals; --amount is in the price's
currency. --period-fraction is "15/31" or a decimal such as "0.5".

flags:
`

// runRate implements "abacus rate".
func runRate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, rateUsage)
		fs.PrintDefaults()
	}
	pricePath := fs.String("price", "", "price definition `file` (JSON)")
	quantity := fs.String("quantity", "0", "summed quantity of the meter")
	events := fs.Int64("events", 0, "number of events (percentage models)")
	amount := fs.String("amount", "", "summed amount of the events (percentage models)")
	eventAmounts := fs.String("event-amounts", "", "comma-separated per-event amounts (percentage with min_fee/max_fee)")
	fraction := fs.String("period-fraction", "", "charge only this share of the period's flat amount and minimum")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("rate: unexpected argument %q", fs.Arg(0))
	}
	if *pricePath == "" {
		fs.Usage()
		return errors.New("rate: --price is required")
	}
	data, err := os.ReadFile(*pricePath)
	if err != nil {
		return fmt.Errorf("rate: %w", err)
	}
	price, err := rating.ParsePrice(data)
	if err != nil {
		return fmt.Errorf("rate: %s: %w", *pricePath, err)
	}

	var u rating.Usage
	if err := setDecimal(&u.Quantity, "--quantity", *quantity); err != nil {
		return err
	}
	u.Events = *events
	u.AmountCurrency = price.Currency().Code
	if *amount != "" {
		if err := setDecimal(&u.Amount, "--amount", *amount); err != nil {
			return err
		}
	}
	if *eventAmounts != "" {
		for i, s := range strings.Split(*eventAmounts, ",") {
			var d apd.Decimal
			if err := setDecimal(&d, fmt.Sprintf("--event-amounts[%d]", i), strings.TrimSpace(s)); err != nil {
				return err
			}
			u.EventAmounts = append(u.EventAmounts, d)
		}
		if !isSet(fs, "events") {
			u.Events = int64(len(u.EventAmounts))
		}
	}
	if *fraction != "" {
		f, err := parseFraction(*fraction)
		if err != nil {
			return fmt.Errorf("rate: --period-fraction: %w", err)
		}
		u.Proration = &f
	}

	var out rating.Result
	if err := price.Rate(&u, &out); err != nil {
		return fmt.Errorf("rate: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(&out)
	}
	return out.WriteTable(stdout)
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func setDecimal(d *apd.Decimal, flagName, s string) error {
	if _, _, err := d.SetString(s); err != nil || d.Form != apd.Finite {
		return fmt.Errorf("rate: %s: %q is not a decimal number", flagName, s)
	}
	return nil
}

// parseFraction reads "num/den" or a decimal in [0, 1] into an exact
// fraction.
func parseFraction(s string) (rating.Fraction, error) {
	if n, d, ok := strings.Cut(s, "/"); ok {
		num, err1 := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		den, err2 := strconv.ParseInt(strings.TrimSpace(d), 10, 64)
		if err1 != nil || err2 != nil {
			return rating.Fraction{}, fmt.Errorf("%q: want whole numbers as in 15/31", s)
		}
		f := rating.Fraction{Num: num, Den: den}
		return f, f.Validate()
	}
	var d apd.Decimal
	if _, _, err := d.SetString(s); err != nil || d.Form != apd.Finite {
		return rating.Fraction{}, fmt.Errorf("%q is neither a fraction like 15/31 nor a decimal", s)
	}
	if d.Exponent > 0 || d.Exponent < -18 || !d.Coeff.IsInt64() {
		return rating.Fraction{}, fmt.Errorf("%q: use at most 18 decimal places or the form 15/31", s)
	}
	den := int64(1)
	for range -d.Exponent {
		den *= 10
	}
	num := d.Coeff.Int64()
	if d.Negative {
		num = -num
	}
	f := rating.Fraction{Num: num, Den: den}
	return f, f.Validate()
}
