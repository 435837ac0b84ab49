// Command abacus is the Abacus usage-metering and billing server and its CLI.
//
// main only calls run; everything else takes its inputs as arguments so that
// tests can drive the whole binary in-process (see run_test.go).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "abacus:", err)
		os.Exit(1)
	}
}

const usage = `usage: abacus <command> [flags]

commands:
  serve     run the Abacus server (embedded JetStream + SQLite by default)
  tenants   create NAME: create a tenant and print its admin key
  rate      price a quantity with a price definition (see docs/pricing.md)
  ingest    send events from an NDJSON, JSON or CSV file to a server
  usage     print usage of a meter as a table or JSON
  bench     measure the ingest pipeline end to end (see docs/BENCHMARKS.md)
  invoices  list, show, render, preview, void and credit invoices; test clocks
`

// run dispatches a subcommand. It is the whole program: main only supplies
// the process environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout, stderr)
	case "tenants":
		return runTenants(ctx, rest, getenv, stdout, stderr)
	case "rate":
		return runRate(rest, stdout, stderr)
	case "ingest":
		return runIngest(ctx, rest, getenv, stdin, stdout, stderr)
	case "usage":
		return runUsage(ctx, rest, getenv, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, getenv, stdout, stderr)
	case "invoices":
		return runInvoices(ctx, rest, getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
