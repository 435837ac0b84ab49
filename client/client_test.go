package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/client"
)

// startServer runs a real server: SQLite and embedded JetStream in a temp dir.
func startServer(t *testing.T) *app.App {
	t.Helper()
	dir := t.TempDir()
	cfg, _, err := app.ParseConfig("test", []string{"--data", dir, "--http", "127.0.0.1:0", "--db", "sqlite:" + filepath.Join(dir, "abacus.db")}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := app.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	return a
}

func TestClientEndToEnd(t *testing.T) {
	a := startServer(t)
	ctx := context.Background()
	c := client.New(a.URL, a.AdminKey)
	if err := c.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if _, err := c.CreateMeter(ctx, abacus.Meter{Key: "tokens", EventType: "llm", Aggregation: abacus.AggSum, Value: "$.tokens",
		GroupBy: map[string]string{"model": "$.model"}}); err != nil {
		t.Fatalf("CreateMeter: %v", err)
	}
	for _, id := range []string{"c-1", "c-2"} {
		if _, err := c.CreateCustomer(ctx, abacus.Customer{ID: id, Name: "Customer " + id}); err != nil {
			t.Fatalf("CreateCustomer %s: %v", id, err)
		}
	}
	ms, err := c.ListMeters(ctx)
	if err != nil || len(ms) != 1 || ms[0].Key != "tokens" {
		t.Fatalf("ListMeters = %v, %v", ms, err)
	}
	cs, err := c.ListCustomers(ctx, "", 0)
	if err != nil || len(cs) != 2 {
		t.Fatalf("ListCustomers = %v, %v", cs, err)
	}
	if got, err := c.GetCustomer(ctx, "c-2"); err != nil || got.Name != "Customer c-2" || got.TimeZone != "UTC" {
		t.Fatalf("GetCustomer = %+v, %v", got, err)
	}

	tm := time.Now().UTC().Add(-time.Minute)
	res, err := c.Ingest(ctx, []client.Event{
		{ID: "e1", Type: "llm", Customer: "c-1", Time: &tm, Properties: map[string]any{"tokens": 100, "model": "m-large"}},
		{ID: "e2", Type: "llm", Customer: "c-1", Time: &tm, Properties: json.RawMessage(`{"tokens": 0.5, "model": "m-small"}`)},
		{ID: "e3", Type: "llm", Customer: "c-2", Properties: map[string]any{"tokens": 7, "model": "m-large"}},
		{ID: "", Type: "llm", Customer: "c-2"}, // rejected: no id
		{ID: "e1", Type: "llm", Customer: "c-1", Time: &tm, Properties: map[string]any{"tokens": 100, "model": "m-large"}}, // duplicate
	})
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if res.Accepted != 4 || len(res.Rejected) != 1 || res.Rejected[0].Index != 3 || res.Rejected[0].Field != "id" {
		t.Fatalf("Ingest = %+v", res)
	}
	if err := a.Aggregator.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}

	u, err := c.Usage(ctx, client.UsageQuery{Meter: "tokens", From: time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)})
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if len(u.Rows) != 1 || *u.Rows[0].Value != "107.5" || u.Rows[0].Count != 3 {
		t.Fatalf("Usage total = %+v", u.Rows)
	}
	u, err = c.Usage(ctx, client.UsageQuery{Meter: "tokens", From: time.Now().UTC().Truncate(time.Hour).Add(-time.Hour),
		GroupBy: []string{"customer"}, Filter: map[string][]string{"model": {"m-large"}}})
	if err != nil {
		t.Fatalf("Usage grouped: %v", err)
	}
	got := map[string]string{}
	for _, r := range u.Rows {
		got[r.Customer] = *r.Value
	}
	if len(got) != 2 || got["c-1"] != "100" || got["c-2"] != "7" {
		t.Fatalf("Usage by customer, model m-large = %v", got)
	}

	ev, err := c.GetEvent(ctx, "e1")
	if err != nil {
		t.Fatalf("GetEvent: %v", err)
	}
	if ev.Customer != "c-1" || ev.Duplicates != 1 {
		t.Fatalf("GetEvent = %+v", ev)
	}

	key, err := c.CreateAPIKey(ctx, "reader", abacus.ScopeRead)
	if err != nil || key.Secret == "" {
		t.Fatalf("CreateAPIKey = %+v, %v", key, err)
	}
	_, err = client.New(a.URL, key.Secret).Ingest(ctx, []client.Event{{ID: "x", Type: "llm", Customer: "c-1"}})
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || ae.Code != abacus.EFORBIDDEN {
		t.Fatalf("ingest with a read key: err = %v, want 403 forbidden", err)
	}
}

func TestClientErrors(t *testing.T) {
	a := startServer(t)
	ctx := context.Background()
	c := client.New(a.URL, a.AdminKey)

	_, err := c.GetCustomer(ctx, "nobody")
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Status != 404 || ae.Code != abacus.ENOTFOUND || ae.Message == "" {
		t.Fatalf("GetCustomer(nobody) err = %#v", err)
	}
	_, err = c.Usage(ctx, client.UsageQuery{Meter: "nope"})
	if !client.IsCode(err, abacus.ENOTFOUND) {
		t.Fatalf("Usage of unknown meter: err = %v", err)
	}
	_, err = c.CreateMeter(ctx, abacus.Meter{Key: "bad key", Aggregation: "median"})
	if !errors.As(err, &ae) || ae.Status != 400 || ae.Code != abacus.EINVALID {
		t.Fatalf("CreateMeter(invalid) err = %v", err)
	}
	_, err = client.New(a.URL, "abk_wrong").ListMeters(ctx)
	if !client.IsCode(err, abacus.EUNAUTHORIZED) {
		t.Fatalf("unknown key: err = %v", err)
	}
	// Every event invalid: a 400 whose result still says why.
	res, err := c.Ingest(ctx, []client.Event{{ID: "a", Type: "t"}})
	if !client.IsCode(err, abacus.EINVALID) || res == nil || len(res.Rejected) != 1 || res.Rejected[0].Field != "customer" {
		t.Fatalf("all-invalid ingest = %+v, %v", res, err)
	}
}

// TestIngestRetries checks that 503 and 429 are retried and 400 is not.
func TestIngestRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"event log unavailable"}}`)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
		default:
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"accepted":1,"rejected":[]}`)
		}
	}))
	defer srv.Close()
	c := client.New(srv.URL, "k", client.WithBackoff(time.Millisecond))
	res, err := c.Ingest(context.Background(), []client.Event{{ID: "a", Type: "t", Customer: "c"}})
	if err != nil || res.Accepted != 1 || calls.Load() != 3 {
		t.Fatalf("Ingest = %+v, %v after %d calls; want accepted after 3", res, err, calls.Load())
	}

	calls.Store(0)
	c = client.New(srv.URL, "k", client.WithBackoff(time.Millisecond), client.WithRetries(1))
	_, err = c.Ingest(context.Background(), []client.Event{{ID: "a", Type: "t", Customer: "c"}})
	if !client.IsCode(err, abacus.ERATELIMIT) || calls.Load() != 2 {
		t.Fatalf("with 1 retry: err = %v after %d calls; want rate_limited after 2", err, calls.Load())
	}
}
