package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abacus-billing/abacus/app"
)

// TestRefusesLogBehindStore: if the event log is lost while the store
// survives, the new log restarts at sequence 1 and reading from the stored
// positions would silently skip events. Abacus must refuse to start.
func TestRefusesLogBehindStore(t *testing.T) {
	dir := t.TempDir()
	cfg, _, err := app.ParseConfig("test", []string{"--data", dir, "--http", "127.0.0.1:0", "--admin-key", adminKey}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, 202, call(t, a, "POST", "/v1/events", "application/json", `[{"id":"a","type":"t","customer":"c"},{"id":"b","type":"t","customer":"d"}]`, nil), "ingest")
	catchUp(t, a)
	if err := a.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Restarting on intact data works.
	a, err = app.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("restart on intact data: %v", err)
	}
	a.Shutdown(context.Background())

	if err := os.RemoveAll(filepath.Join(dir, "jetstream")); err != nil {
		t.Fatal(err)
	}
	a, err = app.Start(context.Background(), cfg, nil)
	if err == nil {
		a.Shutdown(context.Background())
		t.Fatal("started on a store that is ahead of its event log")
	}
	if !strings.Contains(err.Error(), "the log is not the one this store was built from") {
		t.Fatalf("error = %v", err)
	}
}
