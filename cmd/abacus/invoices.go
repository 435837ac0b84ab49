package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/client"
	"github.com/abacus-billing/abacus/invoice"
)

const invoicesUsage = `usage: abacus invoices <command> [flags]

  list      [--customer C] [--subscription S] [--status draft|finalized|void] [--test-clock T] [--json]
  show      ID [--as-of T] [--json]      the invoice with its lines (a draft: live, with its forecast)
  html      ID [--as-of T] [-o FILE]     the printable HTML rendering
  preview   --customer C [--json]        the next invoices as they would be finalized now
  void      ID --reason R
  credit    ID --reason R --amount A [--description D]
  run                                    run the scheduler over the tenant now
  clock-create  --id ID --now T [--name N]
  clock-advance ID --to T                advance a test clock; prints what finalized

Server flags (every command): --url (env ABACUS_URL), --key (env ABACUS_KEY).
`

// runInvoices: abacus invoices <command> — invoices, credit notes and test clocks.
func runInvoices(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, invoicesUsage)
		if len(args) == 0 {
			return fmt.Errorf("no invoices command given")
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("abacus invoices "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url, key := serverFlags(fs, getenv)
	var f client.InvoiceFilter
	asJSON := fs.Bool("json", false, "print JSON")
	asOf := fs.String("as-of", "", "knowledge instant (RFC 3339): the invoice as Abacus knew it then")
	out := fs.String("o", "", "write to this file instead of standard output")
	reason := fs.String("reason", "", "reason (void, credit)")
	amount := fs.String("amount", "", "amount to credit, in the invoice currency")
	desc := fs.String("description", "Credit", "credit note line description")
	to := fs.String("to", "", "time to advance the test clock to (RFC 3339)")
	now := fs.String("now", "", "starting time of a new test clock (RFC 3339)")
	id := fs.String("id", "", "id of a new test clock")
	name := fs.String("name", "", "name of a new test clock")
	fs.StringVar(&f.Customer, "customer", "", "customer id")
	fs.StringVar(&f.Subscription, "subscription", "", "subscription id")
	fs.StringVar(&f.Status, "status", "", "draft, finalized or void")
	fs.StringVar(&f.TestClock, "test-clock", "", "test clock id")
	// The invoice id may come before the flags: abacus invoices show ID --json.
	var arg string
	if len(rest) > 0 && len(rest[0]) > 0 && rest[0][0] != '-' {
		arg, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if arg == "" && fs.NArg() > 0 {
		arg = fs.Arg(0)
	}
	k, err := resolveKey(*key, getenv)
	if err != nil {
		return err
	}
	c := client.New(*url, k)
	var at *time.Time
	if *asOf != "" {
		t, err := time.Parse(time.RFC3339Nano, *asOf)
		if err != nil {
			return fmt.Errorf("--as-of: want RFC 3339, got %q", *asOf)
		}
		at = &t
	}
	needID := func() error {
		if arg == "" {
			return fmt.Errorf("invoices %s: the id is required", cmd)
		}
		return nil
	}
	parseTime := func(flagName, v string) (time.Time, error) {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, fmt.Errorf("--%s: want RFC 3339, got %q", flagName, v)
		}
		return t, nil
	}
	switch cmd {
	case "list":
		invs, err := c.ListInvoices(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, invs)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNUMBER\tSTATUS\tCUSTOMER\tSUBSCRIPTION\tISSUE AT\tTOTAL")
		for _, inv := range invs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s %s\n", inv.ID, dash(inv.Number), inv.Status, inv.CustomerID, inv.SubscriptionID,
				inv.IssueAt.UTC().Format(time.RFC3339), dash(inv.Total), inv.Currency)
		}
		return tw.Flush()
	case "show":
		if err := needID(); err != nil {
			return err
		}
		v, err := c.GetInvoice(ctx, arg, at)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		return printInvoice(stdout, v)
	case "html":
		if err := needID(); err != nil {
			return err
		}
		page, err := c.InvoiceHTML(ctx, arg, at)
		if err != nil {
			return err
		}
		if *out != "" {
			return os.WriteFile(*out, page, 0o644)
		}
		_, err = stdout.Write(page)
		return err
	case "preview":
		if f.Customer == "" {
			return fmt.Errorf("--customer is required")
		}
		vs, err := c.PreviewInvoices(ctx, f.Customer)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, vs)
		}
		for _, v := range vs {
			if err := printInvoice(stdout, v); err != nil {
				return err
			}
		}
		return nil
	case "void":
		if err := needID(); err != nil {
			return err
		}
		inv, err := c.VoidInvoice(ctx, arg, *reason)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s is void: %s\n", inv.ID, inv.Number, inv.VoidReason)
		return nil
	case "credit":
		if err := needID(); err != nil {
			return err
		}
		n, err := c.CreateCreditNote(ctx, arg, invoice.CreditNoteInput{Reason: *reason, Lines: []abacus.CreditNoteLine{{Description: *desc, Amount: *amount}}})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "credit note %s (%s): %s %s on %s\n", n.Number, n.ID, n.Total, n.Currency, n.InvoiceID)
		return nil
	case "run":
		invs, err := c.RunInvoices(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d invoices finalized\n", len(invs))
		for _, inv := range invs {
			fmt.Fprintf(stdout, "  %s %s %s %s\n", inv.Number, inv.ID, inv.Total, inv.Currency)
		}
		return nil
	case "clock-create":
		t, err := parseTime("now", *now)
		if err != nil {
			return err
		}
		tc, err := c.CreateTestClock(ctx, *id, *name, t)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "test clock %s at %s\n", tc.ID, tc.Now.Format(time.RFC3339))
		return nil
	case "clock-advance":
		if err := needID(); err != nil {
			return err
		}
		t, err := parseTime("to", *to)
		if err != nil {
			return err
		}
		tc, invs, err := c.AdvanceTestClock(ctx, arg, t)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "test clock %s at %s; %d invoices finalized\n", tc.ID, tc.Now.Format(time.RFC3339), len(invs))
		for _, inv := range invs {
			fmt.Fprintf(stdout, "  %s %s %s %s\n", inv.Number, inv.ID, inv.Total, inv.Currency)
		}
		return nil
	}
	fmt.Fprint(stderr, invoicesUsage)
	return fmt.Errorf("unknown invoices command %q", cmd)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printInvoice prints an invoice as a table of lines.
func printInvoice(w io.Writer, v *invoice.View) error {
	var doc invoice.Document
	if err := json.Unmarshal(v.Document, &doc); err != nil {
		return err
	}
	title := "draft"
	if doc.Number != "" {
		title = doc.Number
	}
	fmt.Fprintf(w, "Invoice %s (%s) %s — customer %s, subscription %s, issued %s\n", title, v.Status, v.ID, doc.Customer, doc.Subscription, doc.IssueAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for _, l := range doc.Lines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", l.Description, l.Quantity, l.Amount)
	}
	fmt.Fprintf(tw, "Total %s\t\t%s\t\n", doc.Currency, doc.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if fc := v.Forecast; fc != nil {
		fmt.Fprintf(w, "Forecast at period end: %s %s (%s)\n", fc.Total, doc.Currency, fc.Method)
	}
	return nil
}
