package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/abacus-billing/abacus/app"
)

// runServe runs the server until ctx is canceled (SIGINT/SIGTERM), then
// shuts down gracefully.
func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, _, err := app.ParseConfig("abacus serve", args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	logger := app.NewLogger(cfg, stderr)
	a, err := app.Start(ctx, cfg, logger)
	if err != nil {
		return err
	}
	log := "embedded JetStream in " + cfg.DataDir
	if cfg.NATSURL != "" {
		log = "JetStream at " + cfg.NATSURL
	}
	fmt.Fprintf(stdout, "Abacus listening on %s\n  store: %s\n  log:   %s (durability %s)\n", a.URL, cfg.DB, log, cfg.Durability)
	switch {
	case a.AdminKey != "" && cfg.AdminKey == "":
		fmt.Fprintf(stdout, "  admin key (shown once, also in %s/admin-key): %s\n", cfg.DataDir, a.AdminKey)
	case cfg.AdminKey != "":
		fmt.Fprintf(stdout, "  admin key: the one in ABACUS_ADMIN_KEY / --admin-key\n")
	default:
		fmt.Fprintf(stdout, "  admin key: printed on first start and kept in %s/admin-key\n", cfg.DataDir)
	}
	fmt.Fprintf(stdout, "  authenticate with: Authorization: Bearer <key>\n")
	<-ctx.Done()
	fmt.Fprintln(stdout, "shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return a.Shutdown(sctx)
}

// runTenants: abacus tenants create NAME
func runTenants(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "create" {
		return fmt.Errorf("usage: abacus tenants create NAME [--db URL] [--data DIR]")
	}
	name := args[1]
	cfg, _, err := app.ParseConfig("abacus tenants create", args[2:], getenv)
	if err != nil {
		return err
	}
	s, err := app.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	key, err := app.CreateTenant(ctx, s, name, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tenant %s created\nadmin key (shown once): %s\n", name, key)
	return nil
}
