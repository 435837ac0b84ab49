package app_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/usage"
)

// TestUsageQueries checks every aggregation over every window size in a
// time zone across DST changes (spring and autumn), group_by, filters, and
// unique_count across window boundaries, on both stores.
func TestUsageQueries(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) { testUsageQueries(t, store) })
	}
}

func testUsageQueries(t *testing.T, store string) {
	var now atomic.Pointer[time.Time]
	spring := time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)
	now.Store(&spring)
	a := startWithClock(t, store, abacus.ClockFunc(func() time.Time { return *now.Load() }))
	aggs := map[string]string{
		"sum": `"value":"$.v"`, "count": "", "max": `"value":"$.v"`, "min": `"value":"$.v"`,
		"avg": `"value":"$.v"`, "latest": `"value":"$.v"`, "unique_count": `"value":"$.user"`,
	}
	for agg, value := range aggs {
		body := fmt.Sprintf(`{"key":"m-%s","event_type":"req","aggregation":"%s","group_by":{"region":"$.region"}`, agg, agg)
		if value != "" {
			body += "," + value
		}
		mustStatus(t, 201, call(t, a, "POST", "/v1/meters", "", body+"}", nil), "meter "+agg)
	}
	// Europe/Berlin springs forward at 2026-03-29T01:00Z (02:00 CET → 03:00 CEST).
	events := []wireEvent{
		{ID: "s1", Time: "2026-03-28T22:30:00Z", Properties: map[string]any{"v": 5, "user": "a", "region": "eu"}},     // 28th 23:30 CET
		{ID: "s2", Time: "2026-03-28T23:10:00Z", Properties: map[string]any{"v": 2, "user": "b", "region": "us"}},     // 29th 00:10 CET
		{ID: "s3", Time: "2026-03-29T00:59:59.5Z", Properties: map[string]any{"v": 7, "user": "a", "region": "eu"}},   // 01:59 CET
		{ID: "s4", Time: "2026-03-29T01:00:00Z", Properties: map[string]any{"v": 1, "user": "c", "region": "eu"}},     // 03:00 CEST
		{ID: "s5", Time: "2026-03-29T01:30:00Z", Properties: map[string]any{"v": 4, "user": "a", "region": "us"}},     // 03:30 CEST
		{ID: "s6", Time: "2026-03-29T22:30:00Z", Properties: map[string]any{"v": "0.5", "user": "b", "region": "eu"}}, // 30th 00:30 CEST
	}
	for i := range events {
		events[i].Type, events[i].Customer = "req", "c-1"
	}
	mustStatus(t, 202, call(t, a, "POST", "/v1/events", "application/json", events, nil), "ingest spring")
	catchUp(t, a)

	q := func(meter, window, tz, extra string) string {
		var res usage.Result
		path := "/v1/usage?meter=" + meter + "&from=2026-03-28T00:00:00Z&to=2026-03-30T00:00:00Z&window=" + window + "&tz=" + url.QueryEscape(tz) + extra
		mustStatus(t, 200, call(t, a, "GET", path, "", nil, &res), path)
		return render(res.Rows)
	}
	berlin := "Europe/Berlin"
	// Days in Berlin: the 28th is cut at `from`, the 29th is 23 hours long,
	// the 30th is cut at `to`.
	d1, d2, d3 := "2026-03-28T00:00Z..2026-03-28T23:00Z=", " 2026-03-28T23:00Z..2026-03-29T22:00Z=", " 2026-03-29T22:00Z..2026-03-30T00:00Z="
	days := map[string]string{
		"sum":          d1 + "5/1" + d2 + "14/4" + d3 + "0.5/1",
		"count":        d1 + "1/1" + d2 + "4/4" + d3 + "1/1",
		"max":          d1 + "5/1" + d2 + "7/4" + d3 + "0.5/1",
		"min":          d1 + "5/1" + d2 + "1/4" + d3 + "0.5/1",
		"avg":          d1 + "5/1" + d2 + "3.5/4" + d3 + "0.5/1",
		"latest":       d1 + "5/1" + d2 + "4/4" + d3 + "0.5/1",
		"unique_count": d1 + "1/1" + d2 + "3/4" + d3 + "1/1",
	}
	// Local hours: 01:00 CET is followed directly by 03:00 CEST.
	h1, h2, h3, h4, h5 := "2026-03-28T22:00Z..2026-03-28T23:00Z=", " 2026-03-28T23:00Z..2026-03-29T00:00Z=", " 2026-03-29T00:00Z..2026-03-29T01:00Z=", " 2026-03-29T01:00Z..2026-03-29T02:00Z=", " 2026-03-29T22:00Z..2026-03-29T23:00Z="
	hours := map[string]string{
		"sum":          h1 + "5/1" + h2 + "2/1" + h3 + "7/1" + h4 + "5/2" + h5 + "0.5/1",
		"count":        h1 + "1/1" + h2 + "1/1" + h3 + "1/1" + h4 + "2/2" + h5 + "1/1",
		"max":          h1 + "5/1" + h2 + "2/1" + h3 + "7/1" + h4 + "4/2" + h5 + "0.5/1",
		"min":          h1 + "5/1" + h2 + "2/1" + h3 + "7/1" + h4 + "1/2" + h5 + "0.5/1",
		"avg":          h1 + "5/1" + h2 + "2/1" + h3 + "7/1" + h4 + "2.5/2" + h5 + "0.5/1",
		"latest":       h1 + "5/1" + h2 + "2/1" + h3 + "7/1" + h4 + "4/2" + h5 + "0.5/1",
		"unique_count": h1 + "1/1" + h2 + "1/1" + h3 + "1/1" + h4 + "2/2" + h5 + "1/1",
	}
	// The whole range as one window (none, and month: all of it is March in
	// Berlin). For unique_count the distinct users over the range are a, b,
	// c: 3, not the 1+3+1 of the days.
	whole := map[string]string{"sum": "19.5/6", "count": "6/6", "max": "7/6", "min": "0.5/6", "avg": "3.25/6", "latest": "0.5/6", "unique_count": "3/6"}
	for agg := range aggs {
		m := "m-" + agg
		if got := q(m, "day", berlin, ""); got != days[agg] {
			t.Errorf("%s by day:\n got %s\nwant %s", agg, got, days[agg])
		}
		if got := q(m, "hour", berlin, ""); got != hours[agg] {
			t.Errorf("%s by hour:\n got %s\nwant %s", agg, got, hours[agg])
		}
		want := "2026-03-28T00:00Z..2026-03-30T00:00Z=" + whole[agg]
		if got := q(m, "none", berlin, ""); got != want {
			t.Errorf("%s none: got %s want %s", agg, got, want)
		}
		if got := q(m, "month", berlin, ""); got != want {
			t.Errorf("%s month: got %s want %s", agg, got, want)
		}
		if got := q(m, "minute", "UTC", ""); strings.Count(got, "=") != 6 {
			t.Errorf("%s by minute: want 6 windows, got %s", agg, got)
		}
	}
	// Half-hour zone: local hours start at :30 UTC.
	if got, want := q("m-sum", "hour", "Asia/Kolkata", ""), "2026-03-28T22:30Z..2026-03-28T23:30Z=7/2 2026-03-29T00:30Z..2026-03-29T01:30Z=8/2 2026-03-29T01:30Z..2026-03-29T02:30Z=4/1 2026-03-29T22:30Z..2026-03-29T23:30Z=0.5/1"; got != want {
		t.Errorf("Kolkata hours:\n got %s\nwant %s", got, want)
	}
	// group_by and filters.
	if got, want := q("m-sum", "day", berlin, "&group_by=region"), "2026-03-28T00:00Z..2026-03-28T23:00Z region=eu=5/1 2026-03-28T23:00Z..2026-03-29T22:00Z region=eu=8/2 2026-03-28T23:00Z..2026-03-29T22:00Z region=us=6/2 2026-03-29T22:00Z..2026-03-30T00:00Z region=eu=0.5/1"; got != want {
		t.Errorf("group_by region:\n got %s\nwant %s", got, want)
	}
	if got, want := q("m-unique_count", "none", berlin, "&filter[region]=us"), "2026-03-28T00:00Z..2026-03-30T00:00Z=2/2"; got != want {
		t.Errorf("unique users in us: got %s want %s", got, want)
	}
	if got, want := q("m-sum", "none", berlin, "&filter[region]=us&filter[region]=eu&group_by=customer"), "2026-03-28T00:00Z..2026-03-30T00:00Z customer=c-1=19.5/6"; got != want {
		t.Errorf("filter in: got %s want %s", got, want)
	}
	if got := q("m-sum", "none", berlin, "&filter[customer]=c-2"); got != "" {
		t.Errorf("customer filter: got %s", got)
	}

	// Autumn: Berlin falls back at 2026-10-25T01:00Z (03:00 CEST → 02:00
	// CET); local 02:30 happens twice and each is its own hour window.
	autumn := time.Date(2026, 10, 26, 12, 0, 0, 0, time.UTC)
	now.Store(&autumn)
	fall := []wireEvent{
		{ID: "f1", Type: "req", Customer: "c-2", Time: "2026-10-25T00:30:00Z", Properties: map[string]any{"v": 10, "user": "x", "region": "eu"}},
		{ID: "f2", Type: "req", Customer: "c-2", Time: "2026-10-25T01:30:00Z", Properties: map[string]any{"v": 20, "user": "x", "region": "eu"}},
		{ID: "f3", Type: "req", Customer: "c-2", Time: "2026-10-25T22:59:00Z", Properties: map[string]any{"v": 1, "user": "y", "region": "eu"}},
	}
	mustStatus(t, 202, call(t, a, "POST", "/v1/events", "application/json", fall, nil), "ingest autumn")
	catchUp(t, a)
	var res usage.Result
	mustStatus(t, 200, call(t, a, "GET", "/v1/usage?meter=m-sum&customer=c-2&from=2026-10-24T22:00:00Z&to=2026-10-26T00:00:00Z&window=hour&tz=Europe/Berlin", "", nil, &res), "autumn hours")
	if got, want := render(res.Rows), "2026-10-25T00:00Z..2026-10-25T01:00Z=10/1 2026-10-25T01:00Z..2026-10-25T02:00Z=20/1 2026-10-25T22:00Z..2026-10-25T23:00Z=1/1"; got != want {
		t.Errorf("autumn hours:\n got %s\nwant %s", got, want)
	}
	// The 25th is 25 hours long in Berlin.
	mustStatus(t, 200, call(t, a, "GET", "/v1/usage?meter=m-sum&customer=c-2&from=2026-10-24T22:00:00Z&to=2026-10-26T00:00:00Z&window=day&tz=Europe/Berlin", "", nil, &res), "autumn days")
	if got, want := render(res.Rows), "2026-10-24T22:00Z..2026-10-25T23:00Z=31/3"; got != want {
		t.Errorf("autumn day: got %s want %s", got, want)
	}

	// Bad parameters are all named at once.
	var eb struct {
		Error struct{ Code, Message string }
	}
	mustStatus(t, 400, call(t, a, "GET", "/v1/usage?meter=m-sum&from=2026-10-24T22:00:30Z&window=week&tz=Mars/Base&group_by=planet", "", nil, &eb), "bad query")
	for _, want := range []string{"window: must be", "from: must be a whole minute", `group_by: meter m-sum has no dimension "planet"`, "tz: unknown"} {
		if !strings.Contains(eb.Error.Message, want) {
			t.Errorf("bad query message %q lacks %q", eb.Error.Message, want)
		}
	}
	mustStatus(t, 404, call(t, a, "GET", "/v1/usage?meter=nope&from=2026-10-24T22:00:00Z", "", nil, nil), "unknown meter")
}

// render prints rows as "start..end[ customer=c][ dim=v]=value/count".
func render(rows []usage.Row) string {
	var parts []string
	for _, r := range rows {
		s := r.WindowStart.Format("2006-01-02T15:04Z") + ".." + r.WindowEnd.Format("2006-01-02T15:04Z")
		if r.Customer != "" {
			s += " customer=" + r.Customer
		}
		for k, v := range r.Group {
			s += " " + k + "=" + v
		}
		s += "=" + deref(r.Value) + "/" + fmt.Sprint(r.Count)
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// TestUsageAsOf: GET /v1/usage?as_of= answers with the usage known at an
// instant, on both stores. Events aggregated later (also late events for
// minutes that already had usage) are left out, the answer does not change
// when it is asked again later, and as_of needs a customer.
func TestUsageAsOf(t *testing.T) {
	for _, store := range stores {
		t.Run(store, func(t *testing.T) {
			var now atomic.Pointer[time.Time]
			t1 := time.Date(2026, 3, 30, 12, 0, 0, 0, time.UTC)
			now.Store(&t1)
			a := startWithClock(t, store, abacus.ClockFunc(func() time.Time { return *now.Load() }))
			mustStatus(t, 201, call(t, a, "POST", "/v1/meters", "", `{"key":"tokens","event_type":"req","aggregation":"sum","value":"$.v"}`, nil), "meter")
			send := func(events ...wireEvent) {
				for i := range events {
					events[i].Type, events[i].Customer = "req", "c-1"
				}
				mustStatus(t, 202, call(t, a, "POST", "/v1/events", "application/json", events, nil), "ingest")
				catchUp(t, a)
			}
			get := func(query string) usage.Result {
				var res usage.Result
				path := "/v1/usage?meter=tokens&customer=c-1&from=2026-03-30T10:00:00Z&to=2026-03-30T12:00:00Z&window=hour" + query
				mustStatus(t, 200, call(t, a, "GET", path, "", nil, &res), path)
				return res
			}
			send(wireEvent{ID: "e1", Time: "2026-03-30T10:15:00Z", Properties: map[string]any{"v": 5}},
				wireEvent{ID: "e2", Time: "2026-03-30T11:15:00Z", Properties: map[string]any{"v": 1}})
			// Known at 12:00: the read takes a barrier at the clock.
			first := get("&as_of=2026-03-30T12:00:00Z")
			want := "2026-03-30T10:00Z..2026-03-30T11:00Z=5/1 2026-03-30T11:00Z..2026-03-30T12:00Z=1/1"
			if got := render(first.Rows); got != want || first.AsOf == nil || !first.AsOf.Equal(t1) {
				t.Fatalf("as of 12:00: %s as of %v, want %s as of %v", got, first.AsOf, want, t1)
			}

			// An hour later, a late event for 10:15's minute and a new one.
			t2 := t1.Add(time.Hour)
			now.Store(&t2)
			send(wireEvent{ID: "e3", Time: "2026-03-30T10:15:30Z", Properties: map[string]any{"v": 2}},
				wireEvent{ID: "e4", Time: "2026-03-30T11:59:00Z", Properties: map[string]any{"v": 3}})
			if got, want := render(get("").Rows), "2026-03-30T10:00Z..2026-03-30T11:00Z=7/2 2026-03-30T11:00Z..2026-03-30T12:00Z=4/2"; got != want {
				t.Fatalf("now: %s, want %s", got, want)
			}
			if again := get("&as_of=2026-03-30T12:00:00Z"); render(again.Rows) != want {
				t.Fatalf("as of 12:00 asked again: %s, want %s", render(again.Rows), want)
			}
			if before := get("&as_of=2026-03-30T11:59:59.999999999Z"); len(before.Rows) != 0 {
				t.Fatalf("as of before anything was aggregated: %s", render(before.Rows))
			}
			// A future as_of reads what is known now.
			if future := get("&as_of=2030-01-01T00:00:00Z"); render(future.Rows) != "2026-03-30T10:00Z..2026-03-30T11:00Z=7/2 2026-03-30T11:00Z..2026-03-30T12:00Z=4/2" ||
				future.AsOf == nil || future.AsOf.Before(t2) || future.AsOf.After(t2.Add(time.Second)) {
				t.Fatalf("as of 2030: %s as of %v", render(future.Rows), future.AsOf)
			}

			var eb struct {
				Error struct{ Code, Message string }
			}
			mustStatus(t, 400, call(t, a, "GET", "/v1/usage?meter=tokens&from=2026-03-30T10:00:00Z&as_of=2026-03-30T12:00:00Z", "", nil, &eb), "as_of without customer")
			if !strings.Contains(eb.Error.Message, "customer: is required with as_of") {
				t.Errorf("as_of without customer: %q", eb.Error.Message)
			}
			mustStatus(t, 400, call(t, a, "GET", "/v1/usage?meter=tokens&customer=c-1&from=2026-03-30T10:00:00Z&as_of=yesterday", "", nil, &eb), "bad as_of")
			if !strings.Contains(eb.Error.Message, "as_of: must be an RFC 3339 time") {
				t.Errorf("bad as_of: %q", eb.Error.Message)
			}
		})
	}
}
