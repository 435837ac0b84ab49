package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/client"
	"github.com/cockroachdb/apd/v3"
)

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// runUsage: abacus usage --meter M [flags] — print usage as a table or JSON.
func runUsage(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("abacus usage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url, key := serverFlags(fs, getenv)
	var q client.UsageQuery
	fs.StringVar(&q.Meter, "meter", "", "meter key (required)")
	fs.StringVar(&q.Customer, "customer", "", "one customer (default: all)")
	from := fs.String("from", "", "start, RFC 3339 or YYYY-MM-DD (default: start of today UTC)")
	to := fs.String("to", "", "end (exclusive), RFC 3339 or YYYY-MM-DD (default: now rounded up to the minute)")
	fs.StringVar(&q.Window, "window", "", "minute, hour, day, month or none (default none)")
	fs.StringVar(&q.TimeZone, "tz", "", "IANA time zone of windows and dates (default: the customer's, else UTC)")
	groupBy := fs.String("group-by", "", "comma-separated dimensions (and/or customer)")
	var filters multiFlag
	fs.Var(&filters, "filter", "dim=value; repeat for more (values of one dimension mean any of them)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("usage takes no arguments, got %q", fs.Args())
	}
	if q.Meter == "" {
		return fmt.Errorf("--meter is required")
	}
	loc := time.UTC
	if q.TimeZone != "" {
		var err error
		if loc, err = time.LoadLocation(q.TimeZone); err != nil {
			return fmt.Errorf("--tz: unknown time zone %q", q.TimeZone)
		}
	}
	now := time.Now().UTC()
	var err error
	if q.From, err = parseTimeFlag("--from", *from, loc, now.Truncate(24*time.Hour)); err != nil {
		return err
	}
	if q.To, err = parseTimeFlag("--to", *to, loc, now.Truncate(time.Minute).Add(time.Minute)); err != nil {
		return err
	}
	for _, g := range strings.Split(*groupBy, ",") {
		if g = strings.TrimSpace(g); g != "" {
			q.GroupBy = append(q.GroupBy, g)
		}
	}
	for _, f := range filters {
		dim, val, ok := strings.Cut(f, "=")
		if !ok || dim == "" {
			return fmt.Errorf("--filter %q: want dim=value", f)
		}
		if q.Filter == nil {
			q.Filter = map[string][]string{}
		}
		q.Filter[dim] = append(q.Filter[dim], val)
	}
	k, err := resolveKey(*key, getenv)
	if err != nil {
		return err
	}
	res, err := client.New(*url, k).Usage(ctx, q)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return printUsage(stdout, res, q.GroupBy)
}

// parseTimeFlag accepts RFC 3339 or a date (midnight in loc).
func parseTimeFlag(name, v string, loc *time.Location, def time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s: want RFC 3339 (2026-03-01T00:00:00Z) or a date (2026-03-01), got %q", name, v)
}

// printUsage prints one row per window and group, window starts in the
// query's time zone, and a total row when the aggregation adds up (sum,
// count): max, min, avg, latest and unique counts of windows do not.
func printUsage(w io.Writer, res *client.UsageResult, groupBy []string) error {
	loc, err := time.LoadLocation(res.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	var dims []string
	byCustomer := false
	for _, g := range groupBy {
		if g == abacus.ReservedDimension {
			byCustomer = true
		} else if !slices.Contains(dims, g) {
			dims = append(dims, g)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"WINDOW START (" + res.TimeZone + ")"}
	if byCustomer {
		head = append(head, "CUSTOMER")
	}
	for _, d := range dims {
		head = append(head, strings.ToUpper(d))
	}
	head = append(head, "VALUE", "COUNT")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	additive := res.Aggregation == string(abacus.AggSum) || res.Aggregation == string(abacus.AggCount)
	var total apd.Decimal
	var count int64
	for _, r := range res.Rows {
		cols := []string{r.WindowStart.In(loc).Format("2006-01-02 15:04")}
		if byCustomer {
			cols = append(cols, r.Customer)
		}
		for _, d := range dims {
			v, ok := r.Group[d]
			if !ok {
				v = "-"
			}
			cols = append(cols, v)
		}
		val := "-"
		if r.Value != nil {
			val = *r.Value
			if additive {
				var d apd.Decimal
				if _, _, err := d.SetString(val); err != nil {
					return fmt.Errorf("server returned a non-decimal value %q", val)
				}
				if _, err := apd.BaseContext.WithPrecision(100).Add(&total, &total, &d); err != nil {
					return err
				}
			}
		}
		count += r.Count
		cols = append(cols, val, fmt.Sprint(r.Count))
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	if len(res.Rows) == 0 {
		fmt.Fprintln(tw, "(no usage in this range)")
	} else {
		cols := make([]string, len(head)-2)
		cols[0] = "total"
		totalText := "-"
		if additive {
			var r apd.Decimal
			r.Reduce(&total)
			totalText = r.Text('f')
		}
		fmt.Fprintln(tw, strings.Join(append(cols, totalText, fmt.Sprint(count)), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "meter %s (%s), %s to %s\n", res.Meter, res.Aggregation, res.From.In(loc).Format(time.RFC3339), res.To.In(loc).Format(time.RFC3339))
	return nil
}
