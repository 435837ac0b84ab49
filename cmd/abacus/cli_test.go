package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/client"
)

// startTestServer runs a real server (SQLite, embedded JetStream) and
// returns it with a getenv that points the CLI at it.
func startTestServer(t *testing.T) (*app.App, func(string) string) {
	t.Helper()
	dir := t.TempDir()
	cfg, _, err := app.ParseConfig("test", []string{"--data", dir, "--http", "127.0.0.1:0"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Shutdown(context.Background()) })
	env := map[string]string{"ABACUS_URL": a.URL, "ABACUS_KEY": a.AdminKey}
	return a, func(k string) string { return env[k] }
}

func TestIngestAndUsage(t *testing.T) {
	a, getenv := startTestServer(t)
	ctx := context.Background()
	c := client.New(a.URL, a.AdminKey)
	if _, err := c.CreateMeter(ctx, abacus.Meter{Key: "tokens", EventType: "llm", Aggregation: abacus.AggSum, Value: "$.tokens",
		GroupBy: map[string]string{"model": "$.model"}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ts := time.Now().UTC().Add(-2 * time.Minute).Format(time.RFC3339)

	// NDJSON: 5 events, 2 invalid (broken JSON at index 1, no customer at
	// index 3), a blank line that is no event, and a duplicate id.
	nd := strings.Join([]string{
		`{"id":"n1","type":"llm","customer":"c-1","time":"` + ts + `","properties":{"tokens":100,"model":"m-large"}}`,
		`{"id":"n2","type":"llm",`,
		``,
		`{"id":"n3","type":"llm","customer":"c-2","time":"` + ts + `","properties":{"tokens":20.25,"model":"m-small"}}`,
		`{"id":"n4","type":"llm","time":"` + ts + `","properties":{"tokens":1}}`,
		`{"id":"n1","type":"llm","customer":"c-1","time":"` + ts + `","properties":{"tokens":100,"model":"m-large"}}`,
	}, "\n") + "\n"
	ndPath := filepath.Join(dir, "events.ndjson")
	os.WriteFile(ndPath, []byte(nd), 0o644)
	rejects := filepath.Join(dir, "rejects.ndjson")
	var stdout, stderr bytes.Buffer
	// --batch 2 makes the rejected indexes cross batch boundaries.
	err := run(ctx, []string{"ingest", "--batch", "2", "--concurrency", "2", "--rejects", rejects, ndPath}, getenv, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("ingest ndjson: %v\n%s", err, stderr.String())
	}
	assertLine(t, stdout.String(), `accepted  3`)
	assertLine(t, stdout.String(), `rejected  2 \(events and reasons in .*rejects.ndjson\)`)
	if !strings.Contains(stdout.String(), "GET /v1/events/{id}") {
		t.Errorf("summary does not point to GET /v1/events/{id}:\n%s", stdout.String())
	}
	var got []ingestReject
	b, _ := os.ReadFile(rejects)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r ingestReject
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("rejects line %q: %v", line, err)
		}
		got = append(got, r)
	}
	if len(got) != 2 || got[0].Index != 1 || got[0].Line != 2 || got[1].Index != 3 || got[1].Line != 5 ||
		got[1].ID != "n4" || got[1].Field != "customer" || got[0].Raw != `{"id":"n2","type":"llm",` {
		t.Fatalf("rejects = %+v", got)
	}

	// CSV: numbers stay exact, an empty cell is left out, a row with the
	// wrong number of fields is rejected locally, extra columns are
	// properties.
	csvText := "id,type,customer,time,tokens,model\n" +
		"k1,llm,c-1," + ts + ",0.000000000001,m-small\n" +
		"k2,llm,c-2,,12345678901234567890,m-large\n" +
		"k3,llm,c-2," + ts + "\n" +
		"k4,llm,c-3," + ts + ",007,m-large\n"
	csvPath := filepath.Join(dir, "events.csv")
	os.WriteFile(csvPath, []byte(csvText), 0o644)
	csvRejects := filepath.Join(dir, "csv-rejects.ndjson")
	stdout.Reset()
	err = run(ctx, []string{"ingest", "--rejects", csvRejects, csvPath}, getenv, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("ingest csv: %v\n%s", err, stderr.String())
	}
	assertLine(t, stdout.String(), `accepted  3`)
	assertLine(t, stdout.String(), `rejected  1 .*`)
	b, _ = os.ReadFile(csvRejects)
	if !strings.Contains(string(b), `"index":2`) || !strings.Contains(string(b), `"field":"csv"`) {
		t.Fatalf("csv rejects = %s", b)
	}
	if err := a.Aggregator.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	ev, err := c.GetEvent(ctx, "k4")
	if err != nil || string(ev.Properties) != `{"tokens":"007","model":"m-large"}` {
		t.Fatalf("event k4 = %+v, %v; want tokens kept as the string \"007\"", ev, err)
	}

	// usage by customer since the last hour began; the server reads the
	// numeric string "007" as 7.
	stdout.Reset()
	from := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour).Format(time.RFC3339)
	err = run(ctx, []string{"usage", "--meter", "tokens", "--from", from, "--group-by", "customer"}, getenv, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("usage: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	assertLine(t, out, `\S+ \S+ +c-1 +100.000000000001 +2`)
	assertLine(t, out, `\S+ \S+ +c-2 +12345678901234567910.25 +2`)
	assertLine(t, out, `\S+ \S+ +c-3 +7 +1`)
	assertLine(t, out, `total +12345678901234568017.250000000001 +5`)

	stdout.Reset()
	err = run(ctx, []string{"usage", "--meter", "tokens", "--from", from, "--group-by", "model", "--filter", "model=m-large", "--window", "hour", "--json"}, getenv, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("usage --json: %v", err)
	}
	var res client.UsageResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range res.Rows {
		if r.Group["model"] != "m-large" {
			t.Fatalf("filtered row %+v", r)
		}
		n += r.Count
	}
	if n != 3 { // n1, k2, k4
		t.Fatalf("m-large count = %d, want 3: %s", n, stdout.String())
	}

	err = run(ctx, []string{"usage", "--meter", "nope"}, getenv, nil, &stdout, &stderr)
	if !client.IsCode(err, abacus.ENOTFOUND) {
		t.Fatalf("usage of unknown meter: err = %v", err)
	}
}

// TestIngestFailedBatch checks the non-zero exit and the rejects file
// when the server refuses whole requests.
func TestIngestFailedBatch(t *testing.T) {
	_, getenv := startTestServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "e.json")
	os.WriteFile(path, []byte(`[{"id":"a","type":"t","customer":"c"}, {"id":"b","type":"t","customer":"c"}]`), 0o644)
	env := func(k string) string {
		if k == "ABACUS_KEY" {
			return "abk_unknown"
		}
		return getenv(k)
	}
	var stdout, stderr bytes.Buffer
	rejects := filepath.Join(dir, "r.ndjson")
	err := run(context.Background(), []string{"ingest", "--rejects", rejects, path}, env, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "1 requests (2 events) failed") {
		t.Fatalf("err = %v, want a failed request", err)
	}
	b, _ := os.ReadFile(rejects)
	if strings.Count(string(b), `"field":"request"`) != 2 || !strings.Contains(string(b), "unauthorized") {
		t.Fatalf("rejects = %s", b)
	}
}

func assertLine(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^` + pattern + `$`).MatchString(out) {
		t.Errorf("no line matches %q in:\n%s", pattern, out)
	}
}
