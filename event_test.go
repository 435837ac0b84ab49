package abacus

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func TestMessageRoundTrip(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)
	in := []Event{
		{TenantID: "t", ID: "e1", Type: "call", Customer: "c1", Time: now, TimeGiven: true, IngestTime: now, Properties: []byte(`{"a":1}`)},
		{TenantID: "t", ID: "e2", Type: "call", Customer: "c2", Time: now.Add(-time.Hour), IngestTime: now, Properties: []byte(`{}`)},
		{TenantID: "t", ID: "e3", Type: "call", Customer: "c3", Time: now, IngestTime: now, Properties: []byte{}},
	}
	msg := AppendMessage(nil, len(in))
	for i := range in {
		msg = AppendRecord(msg, &in[i])
	}
	out, err := DecodeMessage(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("decoded %+v, want %+v", out, in)
	}
	// Properties share a buffer: appending to one must not touch the next,
	// and reusing msg must not touch either.
	_ = append(out[0].Properties, `xxxxxxxx`...)
	clear(msg)
	if !bytes.Equal(out[1].Properties, []byte(`{}`)) || !bytes.Equal(out[0].Properties, []byte(`{"a":1}`)) || out[0].ID != "e1" {
		t.Fatalf("properties changed: %q %q", out[0].Properties, out[1].Properties)
	}
}

// TestAppendRecordAllocatesNothing: into a buffer of RecordSize, a record
// is encoded without a heap allocation (ingest encodes every event).
func TestAppendRecordAllocatesNothing(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)
	e := Event{TenantID: "t", ID: "e1", Type: "call", Customer: "c1", Time: now, TimeGiven: true, IngestTime: now,
		Properties: []byte(`{"tokens":1200,"model":"m-large","region":"eu-west-1","request_id":"0123456789abcdef"}`)}
	buf := make([]byte, 0, RecordSize(&e))
	if n := testing.AllocsPerRun(100, func() { buf = AppendRecord(buf[:0], &e) }); n != 0 {
		t.Fatalf("AppendRecord allocated %v times a record", n)
	}
	if len(buf) > RecordSize(&e) {
		t.Fatalf("record of %d bytes, RecordSize %d", len(buf), RecordSize(&e))
	}
}

// TestMinuteOf: minutes are rounded down, before 1970 too, as migration
// 0005's SQL backfill rounds them from Unix nanoseconds.
func TestMinuteOf(t *testing.T) {
	m := int64(time.Minute)
	for _, c := range []struct{ ns, want int64 }{
		{0, 0}, {1, 0}, {m - 1, 0}, {m, 1}, {-1, -1}, {-m, -1}, {-m - 1, -2}, {90 * m, 90},
	} {
		if got := MinuteOf(time.Unix(0, c.ns)); got != c.want {
			t.Errorf("MinuteOf(%d ns) = %d, want %d", c.ns, got, c.want)
		}
	}
}
