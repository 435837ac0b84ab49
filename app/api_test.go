package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus/app"
	"github.com/abacus-billing/abacus/httpapi"
)

func expect(t *testing.T, status int, body string, wantStatus int, wantIn ...string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d: %s", status, wantStatus, body)
	}
	for _, w := range wantIn {
		if !strings.Contains(body, w) {
			t.Fatalf("body %s lacks %q", body, w)
		}
	}
}

func TestAuthAndScopes(t *testing.T) {
	a := start(t, "sqlite")
	st, body := request(t, a, "", "GET", "/v1/meters", "", "")
	expect(t, st, body, 401, `"code":"unauthorized"`, "Authorization: Bearer")
	st, body = request(t, a, "abk_wrong", "GET", "/v1/meters", "", "")
	expect(t, st, body, 401, "unknown API key")

	var ingestKey httpapi.APIKeyResponse
	mustStatus(t, 201, call(t, a, "POST", "/v1/api-keys", "", `{"name":"producer","scopes":["ingest"]}`, &ingestKey), "create key")
	if !strings.HasPrefix(ingestKey.Secret, "abk_") || ingestKey.Prefix != ingestKey.Secret[:8] {
		t.Fatalf("key = %+v", ingestKey)
	}
	st, body = request(t, a, ingestKey.Secret, "GET", "/v1/usage?meter=x", "", "")
	expect(t, st, body, 403, `lacks the \"read\" scope`)
	st, body = request(t, a, ingestKey.Secret, "POST", "/v1/meters", "application/json", `{}`)
	expect(t, st, body, 403, "admin")
	st, body = request(t, a, ingestKey.Secret, "POST", "/v1/events", "application/json", `{"id":"e1","type":"t","customer":"c"}`)
	expect(t, st, body, 202, `"accepted":1`)

	st, body = request(t, a, adminKey, "POST", "/v1/api-keys", "application/json", `{"scopes":["root","read"]}`)
	expect(t, st, body, 400, `scopes[0]: must be admin, ingest or read; got \"root\"`)
	var list struct {
		APIKeys []map[string]any `json:"api_keys"`
	}
	mustStatus(t, 200, call(t, a, "GET", "/v1/api-keys", "", nil, &list), "list keys")
	for _, k := range list.APIKeys {
		if _, leaked := k["secret"]; leaked {
			t.Fatalf("listed key shows its secret: %v", k)
		}
		if _, leaked := k["Hash"]; leaked {
			t.Fatalf("listed key shows its hash: %v", k)
		}
	}

	// Another tenant sees none of the default tenant's data.
	key, err := app.CreateTenant(context.Background(), a.Store, "other", "Other Inc")
	if err != nil {
		t.Fatal(err)
	}
	catchUp(t, a)
	st, body = request(t, a, key, "GET", "/v1/events/e1", "", "")
	expect(t, st, body, 404, "not found")
	st, body = request(t, a, adminKey, "GET", "/v1/events/e1", "", "")
	expect(t, st, body, 200, `"status":"accepted"`)
}

func TestConfigValidation(t *testing.T) {
	a := start(t, "sqlite")
	st, body := request(t, a, adminKey, "POST", "/v1/customers", "application/json", `{"id":"","time_zone":"Mars/Olympus","currency":"dollars"}`)
	expect(t, st, body, 400, "id: is required", `time_zone: unknown IANA time zone \"Mars/Olympus\"`, "currency: must be a three-letter ISO 4217 code")
	st, body = request(t, a, adminKey, "POST", "/v1/customers", "application/json", `{"id":"c-1","nmae":"typo"}`)
	expect(t, st, body, 400, `unknown field \"nmae\"`)
	st, body = request(t, a, adminKey, "POST", "/v1/customers", "application/json", `{"id":"c-1","name":"Acme","currency":"eur","time_zone":"Europe/Paris","metadata":{"crm":"42"}}`)
	expect(t, st, body, 201, `"currency":"EUR"`)
	st, body = request(t, a, adminKey, "POST", "/v1/customers", "application/json", `{"id":"c-1"}`)
	expect(t, st, body, 409, `customer \"c-1\" already exists`)
	st, body = request(t, a, adminKey, "GET", "/v1/customers/c-1", "", "")
	expect(t, st, body, 200, `"name":"Acme"`, `"crm":"42"`)
	st, body = request(t, a, adminKey, "GET", "/v1/customers/c-404", "", "")
	expect(t, st, body, 404, `customer \"c-404\" not found`)

	st, body = request(t, a, adminKey, "POST", "/v1/meters", "application/json", `{"key":"bad key","event_type":"","aggregation":"median","group_by":{"customer":"$.c","ok":"$."},"filter":[{"path":"$.x","op":"like"}]}`)
	expect(t, st, body, 400, "key: must be", "event_type: is required", `aggregation: must be one of`, `group_by.customer: \"customer\" is reserved`, "group_by.ok:", `filter[0].op: must be eq, in or exists; got \"like\"`)
	st, body = request(t, a, adminKey, "POST", "/v1/meters", "application/json", `{"key":"calls","event_type":"api","aggregation":"count","value":"$.n"}`)
	expect(t, st, body, 400, "value: must be empty for aggregation count")
	st, body = request(t, a, adminKey, "POST", "/v1/meters", "application/json", `{"key":"tok","event_type":"llm","aggregation":"sum","value":"$.tokens","filter":[{"path":"$.model","op":"in","values":["a","b"]}]}`)
	expect(t, st, body, 201, `"key":"tok"`)
	st, body = request(t, a, adminKey, "PATCH", "/v1/meters/tok", "application/json", `{"aggregation":"max","value":"$.x"}`)
	expect(t, st, body, 409, "aggregation, value", "cannot change", "create a new meter")
	st, body = request(t, a, adminKey, "PATCH", "/v1/meters/tok", "application/json", `{"name":"Tokens","description":"LLM tokens"}`)
	expect(t, st, body, 200, `"name":"Tokens"`, `"aggregation":"sum"`)

	// The backdating window is a tenant setting and applies to ingest at once.
	st, body = request(t, a, adminKey, "GET", "/v1/tenant", "", "")
	expect(t, st, body, 200, `"backdate_window":"840h0m0s"`, `"future_skew":"5m0s"`)
	st, body = request(t, a, adminKey, "PATCH", "/v1/tenant", "application/json", `{"backdate_window":"5m","future_skew":"forever"}`)
	expect(t, st, body, 400, "backdate_window: must be a duration from 1h0m0s", `future_skew: must be a duration from 0s to 24h0m0s such as \"72h\", got \"forever\"`)
	st, body = request(t, a, adminKey, "PATCH", "/v1/tenant", "application/json", `{"backdate_window":"48h"}`)
	expect(t, st, body, 200, `"backdate_window":"48h0m0s"`)
	old := time.Now().UTC().Add(-72 * time.Hour).Format(time.RFC3339)
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/json", `{"id":"old","type":"t","customer":"c","time":"`+old+`"}`)
	expect(t, st, body, 400, "older than the backdating window of 2 days")
}

func TestIngestFormatsAndLimits(t *testing.T) {
	dir := t.TempDir()
	cfg, _, err := app.ParseConfig("test", []string{"--data", dir, "--http", "127.0.0.1:0", "--admin-key", adminKey,
		"--max-body-bytes", "20000", "--max-events", "50", "--max-event-bytes", "1000"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown(context.Background())
	mustStatus(t, 201, call(t, a, "POST", "/v1/meters", "", `{"key":"n","event_type":"t","aggregation":"sum","value":"$.n"}`, nil), "meter")
	now := time.Now().UTC().Format(time.RFC3339Nano)

	st, body := request(t, a, adminKey, "POST", "/v1/events", "application/x-ndjson",
		`{"id":"nd-1","type":"t","customer":"c","properties":{"n":1}}`+"\n\n"+`{"id":"nd-2","type":"t","customer":"c","time":"yesterday"}`+"\n"+`{"id":"nd-3","type":"t","customer":"c","properties":{"n":2}}`+"\n")
	expect(t, st, body, 202, `"accepted":2`, `{"index":1,"id":"nd-2","field":"time","reason":"must be an RFC 3339 timestamp`)
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/cloudevents+json",
		`{"specversion":"1.0","id":"ce-1","source":"/billing","type":"t","subject":"c","time":"`+now+`","data":{"n":3}}`)
	expect(t, st, body, 202, `"accepted":1`)
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/cloudevents-batch+json",
		`[{"specversion":"1.0","id":"ce-2","source":"/b","type":"t","subject":"c","data":{"n":4}},{"specversion":"0.3","id":"ce-3","type":"t","subject":"c"},{"specversion":"1.0","id":"ce-4","type":"t","data":[1]}]`)
	expect(t, st, body, 202, `"accepted":1`, `"index":1,"id":"ce-3","field":"specversion"`, `"index":2,"id":"ce-4","field":"subject","reason":"is required"`)
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/json",
		`[{"id":"p","type":"t","customer":"c","properties":[1]},{"id":"f","type":"t","customer":"c","time":"2999-01-01T00:00:00Z"},{"id":"n","type":7,"customer":"c"},"not an object"]`)
	expect(t, st, body, 400, `"accepted":0`, `"field":"properties","reason":"must be a JSON object"`, `"id":"f","field":"time","reason":"2999-01-01T00:00:00Z is more than 5m0s in the future"`,
		`"id":"n","field":"type"`, `"index":3`)
	st, body = request(t, a, adminKey, "POST", "/v1/events", "text/csv", "id,type")
	expect(t, st, body, 400, `Content-Type \"text/csv\" is not supported`)
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/json", `{"id":`)
	expect(t, st, body, 400, `"index":0`, "not a valid event: unexpected EOF")

	// Limits: a too-large event is rejected alone; too many events or too
	// large a body reject the request with the limit in the message.
	big := fmt.Sprintf(`[{"id":"big","type":"t","customer":"c","properties":{"pad":"%s"}},{"id":"small","type":"t","customer":"c","properties":{"n":5}}]`, strings.Repeat("x", 1200))
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/json", big)
	expect(t, st, body, 202, `"accepted":1`, `"id":"big"`, "the limit is 1000")
	var many bytes.Buffer
	for i := 0; i < 51; i++ {
		fmt.Fprintf(&many, `{"id":"m%d","type":"t","customer":"c"}`+"\n", i)
	}
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/x-ndjson", many.String())
	expect(t, st, body, 413, "51 events in one request; the limit is 50")
	st, body = request(t, a, adminKey, "POST", "/v1/events", "application/json", `[`+strings.Repeat(`{"id":"x","type":"t","customer":"c"},`, 600)+`{}]`)
	expect(t, st, body, 413, "over the limit of 20000 bytes")

	catchUp(t, a)
	var e httpapi.EventResponse
	mustStatus(t, 200, call(t, a, "GET", "/v1/events/ce-1", "", nil, &e), "ce-1")
	if e.Customer != "c" || string(e.Properties) != `{"n":3}` || !e.TimeGiven {
		t.Fatalf("ce-1 = %+v", e)
	}
	var res struct {
		Rows []struct{ Value string } `json:"rows"`
	}
	from := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute).Format(time.RFC3339)
	mustStatus(t, 200, call(t, a, "GET", "/v1/usage?meter=n&from="+from, "", nil, &res), "usage")
	if len(res.Rows) != 1 || res.Rows[0].Value != "15" { // nd-1 1 + nd-3 2 + ce-1 3 + ce-2 4 + small 5
		b, _ := json.Marshal(res)
		t.Fatalf("usage = %s", b)
	}
}

// TestIngestBuffersReused: ingest reuses a request's body, its parsed
// events and the committer's record buffers for later requests (httpapi's
// scratch, ingest's pieces). Requests sent from several senders at once,
// in every format (JSON on the fast path and on encoding/json's, NDJSON
// over 64 KiB, a CloudEvents batch), each of events with properties of its
// own and some with an event rejected, must still store every valid
// event's own properties, byte for byte. The rejections are counted under
// the label "other", not under the field names the client made up.
func TestIngestBuffersReused(t *testing.T) {
	a := start(t, "sqlite")
	const senders, requests, perRequest = 8, 60, 40
	props := func(r, i int) string {
		// Bodies of different lengths, so a reused buffer holds the tail
		// of a longer earlier body; NDJSON requests are over 64 KiB.
		pad := (r*7 + i) % 50
		if r%4 == 1 {
			pad += 1700
		}
		return fmt.Sprintf(`{"n":%d,"pad":"%s"}`, r*1000+i, strings.Repeat("x", pad))
	}
	body := func(r int) (string, string) {
		var b strings.Builder
		for i := range perRequest {
			switch r % 4 {
			case 0, 3: // a JSON array; in the fourth format, an escaped name sends the event through encoding/json
				b.WriteString(map[bool]string{true: "[", false: ","}[i == 0])
				name := "id"
				if r%4 == 3 {
					name = `\u0069d`
				}
				fmt.Fprintf(&b, `{"%s":"r%d-%d","type":"call","customer":"c-%d","properties":%s}`, name, r, i, i%3, props(r, i))
				if i == perRequest-1 {
					if r%4 == 3 {
						// A made-up name, and one that is a CloudEvents field but
						// not an event's: both count as other.
						fmt.Fprintf(&b, `,{"id":"bad-%d","type":"call","customer":"c-0","zz%d":1},{"id":"bad2-%d","type":"call","customer":"c-0","subject":"x"}`, r, r, r)
					}
					b.WriteString("]")
				}
			case 1:
				fmt.Fprintf(&b, `{"id":"r%d-%d","type":"call","customer":"c-%d","properties":%s}`+"\n", r, i, i%3, props(r, i))
			case 2:
				b.WriteString(map[bool]string{true: "[", false: ","}[i == 0])
				fmt.Fprintf(&b, `{"specversion":"1.0","id":"r%d-%d","source":"/t","type":"call","subject":"c-%d","data":%s}`, r, i, i%3, props(r, i))
				if i == perRequest-1 {
					b.WriteString("]")
				}
			}
		}
		return []string{"application/json", "application/x-ndjson", "application/cloudevents-batch+json", "application/json"}[r%4], b.String()
	}
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for s := range senders {
		wg.Go(func() {
			for r := s; r < requests; r += senders {
				contentType, b := body(r)
				// Not request(), which calls t.Fatal: this is not the test's goroutine.
				req, _ := http.NewRequest("POST", a.URL+"/v1/events", strings.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+adminKey)
				req.Header.Set("Content-Type", contentType)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- fmt.Errorf("request %d: %v", r, err)
					continue
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 202 || !strings.Contains(string(got), fmt.Sprintf(`"accepted":%d`, perRequest)) {
					errs <- fmt.Errorf("request %d: %d %s", r, resp.StatusCode, got)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	catchUp(t, a)
	for r := range requests {
		for i := range perRequest {
			var e httpapi.EventResponse
			id := fmt.Sprintf("r%d-%d", r, i)
			mustStatus(t, 200, call(t, a, "GET", "/v1/events/"+id, "", nil, &e), id)
			if e.Customer != fmt.Sprintf("c-%d", i%3) || string(e.Properties) != props(r, i) {
				t.Fatalf("%s: customer %s, properties %.80s; want c-%d, %.80s", id, e.Customer, e.Properties, i%3, props(r, i))
			}
		}
	}
	st, metrics := request(t, a, "", "GET", "/metrics", "", "")
	if want := fmt.Sprintf(`abacus_events_rejected_total{field="other"} %d`, 2*requests/4); st != 200 || !strings.Contains(metrics, want) ||
		strings.Contains(metrics, `field="zz`) || strings.Contains(metrics, `field="subject"`) {
		t.Fatalf("/metrics (%d) has no %q, or a label a client made up", st, want)
	}
}
