package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/sqlite"
	"github.com/jackc/pgx/v5"
)

// server is an in-process Abacus started for one run.
type server struct {
	app     *app.App
	url     string
	key     string
	target  string
	cleanup []func()
}

// startServer starts Abacus in a temporary data dir. With a PostgreSQL
// store the run gets a schema of its own: the store keeps the aggregator's
// log positions, and a fresh log behind an old store's positions would
// skip events.
func startServer(ctx context.Context, cfg Config) (s *server, err error) {
	s = &server{target: "in-process sqlite, " + sqlite.Driver}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	dir, err := os.MkdirTemp("", "abacus-bench-")
	if err != nil {
		return nil, err
	}
	s.cleanup = append(s.cleanup, func() { os.RemoveAll(dir) })
	db := cfg.DB
	if db != "" {
		s.target = "in-process postgres"
		if db, err = s.freshSchema(ctx, db); err != nil {
			return nil, err
		}
	}
	s.key = "abk_bench_" + randomHex(16)
	if db == "" {
		db = "sqlite:" + filepath.Join(dir, "abacus.db")
	}
	// The store and the log are always named here (the log embedded in the
	// temp dir): an ABACUS_DB or ABACUS_NATS in the environment must never
	// point a benchmark at a real deployment.
	args := []string{"--data", dir, "--http", "127.0.0.1:0", "--durability", string(cfg.Durability),
		"--partitions", fmt.Sprint(cfg.Partitions), "--admin-key", s.key, "--db", db, "--nats="}
	// Other ABACUS_* settings come from the environment, as for `abacus
	// serve` (ABACUS_MEMORY_LIMIT=0, say); the flags above win.
	ac, _, err := app.ParseConfig("bench", args, os.Getenv)
	if err != nil {
		return nil, err
	}
	if s.app, err = app.Start(ctx, ac, slog.New(slog.DiscardHandler)); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s.url = s.app.URL
	return s, nil
}

// freshSchema creates a schema for this run and returns a URL using it.
func (s *server) freshSchema(ctx context.Context, url string) (string, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(url), err)
	}
	defer conn.Close(ctx)
	schema := "abacus_bench_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", fmt.Errorf("create schema %s: %w", schema, err)
	}
	s.cleanup = append(s.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, url); err == nil {
			c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
			c.Close(ctx)
		}
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema, nil
}

func redact(url string) string {
	c, err := pgx.ParseConfig(url)
	if err != nil {
		return "(unparsable URL)"
	}
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// close shuts the server down, then removes what the run created, in
// reverse order (the schema after the store's connections are closed).
// Calling it again does nothing.
func (s *server) close() {
	if s.app != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s.app.Shutdown(ctx)
		cancel()
		s.app = nil
	}
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}
