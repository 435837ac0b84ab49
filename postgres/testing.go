package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultTestURL is the server tests use when ABACUS_TEST_POSTGRES is not
// set: a local PostgreSQL with trust authentication.
const DefaultTestURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// TestURL returns the connection URL of the test server: the environment
// variable ABACUS_TEST_POSTGRES, or DefaultTestURL.
func TestURL() string {
	if u := os.Getenv("ABACUS_TEST_POSTGRES"); u != "" {
		return u
	}
	return DefaultTestURL
}

// OpenTestStore opens an empty, migrated store in a schema of its own on
// the test server, and drops the schema when the test ends. Tests of other
// packages use it to run against PostgreSQL; it lives outside a _test file
// so that they can.
//
// If the server cannot be reached, the test is skipped, unless the
// environment variable CI is "true": in CI a missing dependency is a
// failure, never a silent skip.
func OpenTestStore(t testing.TB) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(TestSchemaURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4 // many test stores share one server
	s, err := openConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("open test store: %v", err)
	}
	// Registered after the drop, so it runs before it: the schema cannot be
	// dropped while pooled connections use it. Close is idempotent, so
	// tests may close the store themselves.
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSchemaURL creates a fresh schema on the test server and returns a
// URL whose connections use only that schema (search_path), for tests that
// open the store themselves (end-to-end tests, a server process). The
// schema is dropped when the test ends; whoever opens the URL must close
// its connections first (register that cleanup after calling this).
// Unreachable server: skip, or fail under CI=true.
func TestSchemaURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := TestURL()
	admin, err := connectTest(ctx, url)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("postgres test server %s unreachable (CI=true, so this fails instead of skipping): %v", redact(url), err)
		}
		t.Skipf("postgres test server %s unreachable (set ABACUS_TEST_POSTGRES): %v", redact(url), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	schema := "abacus_test_" + randomHex(8)
	if _, err := admin.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() { dropSchema(t, url, schema) })
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}

func connectTest(ctx context.Context, url string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return conn, nil
}

func dropSchema(t testing.TB, url, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := connectTest(ctx, url)
	if err != nil {
		t.Errorf("drop test schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`); err != nil {
		t.Errorf("drop test schema %s: %v", schema, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b)
}

// redact hides the password of a connection URL in messages.
func redact(url string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return "(unparsable URL)"
	}
	return cfg.User + "@" + cfg.Host + ":" + strconv.Itoa(int(cfg.Port)) + "/" + cfg.Database
}
