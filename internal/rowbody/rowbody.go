// Package rowbody is what the SQLite and PostgreSQL stores share for tables
// that keep a row's object as a JSON body next to the columns queries
// filter on: encoding and decoding the body, and WHERE clauses built from
// optional conditions.
package rowbody

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
)

// Encode returns the JSON of v for a body column. HTML escaping is off
// so that a json.RawMessage inside (a plan's or a charge's price) comes
// back as it went in: encoding/json compacts it, but changes nothing else.
func Encode(v any) (string, error) {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// Decode decodes a body column into v and sets every time in it to UTC,
// as the Unix-nanosecond columns read back: a time stored with another
// offset would otherwise decode into a fixed zone, or into Local when the
// offset happens to match it.
func Decode(body string, v any) error {
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return err
	}
	inUTC(reflect.ValueOf(v))
	return nil
}

var timeType = reflect.TypeFor[time.Time]()

// inUTC sets every time.Time reachable from v through exported fields,
// pointers and slices to UTC. It walks the value rather than listing the
// time fields of each type so that a field added later is not missed.
func inUTC(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			inUTC(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			inUTC(v.Index(i))
		}
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(v.Interface().(time.Time).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				inUTC(v.Field(i))
			}
		}
	}
}

// Where builds the WHERE clause of a query from optional conditions, each
// written with ? placeholders. Numbered stores (PostgreSQL) get them
// numbered $1, $2, ... in the order of their arguments.
type Where struct {
	Numbered bool
	Args     []any
	conds    []string
}

// Add appends a condition and its arguments.
func (w *Where) Add(cond string, args ...any) {
	for _, a := range args {
		w.Args = append(w.Args, a)
		if w.Numbered {
			cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.Args)), 1)
		}
	}
	w.conds = append(w.conds, cond)
}

// String is the conditions joined by AND.
func (w *Where) String() string { return strings.Join(w.conds, " AND ") }

// NullNS is the Unix-nanosecond column value of an optional time (NULL for
// nil), as both stores keep times.
func NullNS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

// FromNullNS reads an optional Unix-nanosecond column, in UTC.
func FromNullNS(n *int64) *time.Time {
	if n == nil {
		return nil
	}
	t := time.Unix(0, *n).UTC()
	return &t
}

// CheckEventFilter refuses a scan of raw events (ScanEvents) without a
// tenant or a customer (EINVALID): a scan is always one customer's.
func CheckEventFilter(f abacus.EventFilter) error {
	var p abacus.Problems
	if f.TenantID == "" {
		p.Add("tenant", "is required")
	}
	if f.Customer == "" {
		p.Add("customer", "is required to read raw events")
	}
	return p.Err()
}

// EventBlocksWhere is the WHERE clause of ScanEvents for f
// (abacus.EventFilter), in both stores, over their event blocks joined to
// the events they list: b for event_blocks, e for events (CheckEventFilter's
// errors). Every event of a block lies in the block's minute, so the
// blocks' minutes select the range and the events' times trim its ends.
// The caller writes the join of b's listed events to e.
func EventBlocksWhere(f abacus.EventFilter, numbered bool) (Where, error) {
	if err := CheckEventFilter(f); err != nil {
		return Where{}, err
	}
	w := Where{Numbered: numbered}
	w.Add(`b.tenant_id = ? AND b.customer_id = ?`, f.TenantID, f.Customer)
	if !f.From.IsZero() {
		w.Add(`b.minute >= ?`, abacus.MinuteOf(f.From))
	}
	if !f.To.IsZero() {
		w.Add(`b.minute <= ?`, abacus.MinuteOf(f.To.Add(-1)))
	}
	if !f.KnownBy.IsZero() {
		w.Add(`b.applied_at <= ?`, f.KnownBy.UnixNano())
	}
	if f.Type != "" {
		w.Add(`e.type = ?`, f.Type)
	}
	if !f.From.IsZero() {
		w.Add(`e.time >= ?`, f.From.UnixNano())
	}
	if !f.To.IsZero() {
		w.Add(`e.time < ?`, f.To.UnixNano())
	}
	return w, nil
}
