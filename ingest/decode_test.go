package ingest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// The jsontext fast path must decide every body exactly as encoding/json
// does: same events, same rejections, same errors.
var decodeCorpus = []string{
	`[{"id":"e1","type":"call","customer":"c1","time":"2026-03-01T11:59:00Z","properties":{"tokens":12,"model":"m"}}]`,
	`[{"id":"e1","type":"call","customer":"c1","properties":{ "tokens" : 12, "s": "a b" }}]`,
	`[{"id":"e1","type":"call","customer":"c1"},{"id":"e2","type":"call","customer":"c1","properties":null}]`,
	`[{"id":"e1","type":"call","customer":"c1","extra":1}]`,
	`[{"ID":"e1","type":"call","customer":"c1"}]`,
	`[{"id":"e1","id":"e2","type":"call","customer":"c1"}]`,
	`[{"id":null,"type":"call","customer":"c1"}]`,
	`[{"id":5,"type":"call","customer":"c1"}]`,
	`[{"id":"e\u00e9","type":"c\"all","customer":"c1"}]`,
	"[{\"id\":\"e\xff\",\"type\":\"call\",\"customer\":\"c1\"}]",
	"[{\"id\":\"e1\",\"type\":\"call\",\"customer\":\"c1\",\"properties\":{\"k\":\"\xff\"}}]",
	`[{"id":"e1","type":"call","customer":"c1","properties":{"a":1,"a":2}}]`,
	`[{"id":"e1","type":"call","customer":"c1","properties":[1]}]`,
	`[{"id":"e1","type":"call","customer":"c1","properties":"x"}]`,
	`[{"id":"e1","type":"call","customer":"c1"} , 5, "x", null]`,
	`[{"\u0069d":"e1","type":"call","customer":"c1"}]`,
	`[{"id":"e1","type":"call","customer":"c1","time":"yesterday"}]`,
	`[{"id":"e1","type":"call","customer":"c1"}] x`,
	`[{"id":"e1","type":"call","customer":"c1"}] []`,
	`[{"id":"e1","type":"call","customer":"c1"`,
	`[]`,
	` [ ] `,
	`{"id":"e1","type":"call","customer":"c1","properties":{"n":1.50}}`,
	`[{"id":"","type":"call","customer":"c1"}]`,
	`[{"id":"e1","type":"call","customer":"c1","properties":{"deep":{"x":[1,{"y":null}]}}}]`,
}

func TestFastPathMatchesEncodingJSON(t *testing.T) {
	for _, body := range decodeCorpus {
		checkSamePaths(t, []byte(body))
	}
}

func FuzzFastPath(f *testing.F) {
	for _, body := range decodeCorpus {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkSamePaths(t, body) })
}

func checkSamePaths(t *testing.T, body []byte) {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fast := Parser{TenantID: "t", Now: now, Limits: Limits{}.Defaults()}
	slow := fast
	slow.slow = true
	fe, fr, ferr := fast.Parse(FormatJSON, body)
	se, sr, serr := slow.Parse(FormatJSON, body)
	if !reflect.DeepEqual(errText(ferr), errText(serr)) || !reflect.DeepEqual(fr, sr) || !sameEvents(fe, se) {
		t.Errorf("body %q:\nfast: %v %+v %v\nslow: %v %+v %v", body, eventsText(fe), fr, ferr, eventsText(se), sr, serr)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func sameEvents(a, b []abacus.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if string(x.Properties) != string(y.Properties) {
			return false
		}
		x.Properties, y.Properties = nil, nil
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func eventsText(es []abacus.Event) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.ID + "|" + e.Type + "|" + e.Customer + "|" + e.Time.String() + "|" + string(e.Properties) + ";")
	}
	return b.String()
}

// BenchmarkParse: a request of 100 events of ~250 B, as abacus bench sends
// them, through each decoding path.
func BenchmarkParse(b *testing.B) {
	var body strings.Builder
	body.WriteString("[")
	for i := range 100 {
		if i > 0 {
			body.WriteString(",")
		}
		body.WriteString(`{"id":"bench-r1-3-` + strings.Repeat("7", 6) + `","type":"bench_abcd","customer":"bench-cust-00042","time":"2026-03-01T11:59:00.123Z",` +
			`"properties":{"tokens":1234,"model":"m-large","region":"eu-central-1","latency_ms":321,"request_id":"` + strings.Repeat("ab", 40) + `"}}`)
	}
	body.WriteString("]")
	raw := []byte(body.String())
	for _, path := range []struct {
		name string
		slow bool
	}{{"encoding-json", true}, {"jsontext", false}} {
		b.Run(path.name, func(b *testing.B) {
			p := Parser{TenantID: "t", Now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Limits: Limits{}.Defaults(), slow: path.slow}
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if es, rj, err := p.Parse(FormatJSON, raw); err != nil || len(es) != 100 || len(rj) != 0 {
					b.Fatal(err, rj)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/event")
		})
	}
}

// TestParseNDJSONLarge: every line of an NDJSON body becomes its own event,
// in order, however long the body (a bufio.Scanner, once used to split
// it, moved earlier lines when it refilled past 64 KiB), blank lines and
// CRLF endings included; and the events' properties are the body's bytes.
func TestParseNDJSONLarge(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := Parser{TenantID: "t", Now: now, Limits: Limits{}.Defaults()}
	var body strings.Builder
	const n = 1200
	for i := range n {
		fmt.Fprintf(&body, `{"id":"e%d","type":"call","customer":"c%d","properties":{"n":%d,"pad":"%s"}}`, i, i%7, i, strings.Repeat("x", i%90))
		switch i % 3 {
		case 0:
			body.WriteString("\n")
		case 1:
			body.WriteString("\r\n\n")
		case 2:
			body.WriteString("\n  \n")
		}
	}
	raw := []byte(body.String())
	if len(raw) < 128<<10 {
		t.Fatalf("body of %d bytes, want more than twice 64 KiB", len(raw))
	}
	events, rejected, err := p.Parse(FormatNDJSON, raw)
	if err != nil || len(rejected) != 0 || len(events) != n {
		first := Rejection{}
		if len(rejected) > 0 {
			first = rejected[0]
		}
		t.Fatalf("%d events and %d rejected (the first %+v), want %d events: %v", len(events), len(rejected), first, n, err)
	}
	for i, e := range events {
		props := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, i, strings.Repeat("x", i%90))
		if e.ID != fmt.Sprintf("e%d", i) || e.Customer != fmt.Sprintf("c%d", i%7) || string(e.Properties) != props {
			t.Fatalf("event %d: %s %s %s", i, e.ID, e.Customer, e.Properties)
		}
	}
}
