package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/postgres"
)

const adminKey = "abk_test_admin_key"

// stores are the store kinds every end-to-end test runs on.
var stores = []string{"sqlite", "postgres"}

// start runs Abacus in-process on a random port with an empty data dir.
func start(t *testing.T, store string) *app.App {
	t.Helper()
	return startWithClock(t, store, nil)
}

func startWithClock(t *testing.T, store string, clock abacus.Clock) *app.App {
	t.Helper()
	return startWith(t, store, func(c *app.Config) { c.Clock = clock })
}

// startWith starts Abacus on store with the test defaults, changed by opt.
func startWith(t *testing.T, store string, opt func(*app.Config)) *app.App {
	t.Helper()
	dir := t.TempDir()
	cfg, _, err := app.ParseConfig("test", []string{"--data", dir, "--http", "127.0.0.1:0", "--admin-key", adminKey}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if store == "postgres" {
		cfg.DB = postgres.TestSchemaURL(t)
		cfg.Appliers = 4
	}
	opt(&cfg)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ABACUS_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	a, err := app.Start(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return a
}

// call does one API request with the admin key and decodes the JSON answer
// into out (when not nil), returning the status. body is marshalled unless
// it is already a string or []byte.
func call(t *testing.T, a *app.App, method, path, contentType string, body any, out any) int {
	t.Helper()
	var raw string
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = string(b)
	case string:
		raw = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(j)
	}
	status, resp := request(t, a, adminKey, method, path, contentType, raw)
	if out != nil {
		if err := json.Unmarshal([]byte(resp), out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, status, resp, err)
		}
	}
	return status
}

// request does one API request with the given key (none when empty) and
// returns the status and the body.
func request(t *testing.T, a *app.App, key, method, path, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustStatus(t *testing.T, want, got int, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: status %d, want %d", what, got, want)
	}
}

func catchUp(t *testing.T, a *app.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.Aggregator.CatchUp(ctx); err != nil {
		t.Fatalf("aggregator did not catch up: %v", err)
	}
}
