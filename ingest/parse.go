// Package ingest turns POST /v1/events bodies into validated events and
// makes them durable in the event log with group commit.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
)

// Limits bound one ingest request. Going over MaxBodyBytes or MaxEvents
// rejects the whole request with 413; an event over MaxEventBytes is
// rejected alone.
type Limits struct {
	MaxBodyBytes  int64 // default 8 MiB
	MaxEvents     int   // default 10,000 events per request
	MaxEventBytes int   // default abacus.MaxEventBytes (64 KiB)
}

// Defaults fills zero fields.
func (l Limits) Defaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = 8 << 20
	}
	if l.MaxEvents <= 0 {
		l.MaxEvents = 10000
	}
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = abacus.MaxEventBytes
	}
	return l
}

// Rejection is one event that was not accepted, and why.
type Rejection struct {
	Index  int    `json:"index"`
	ID     string `json:"id,omitempty"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
	// Unknown: Field is a name the client sent that events do not have
	// (metrics count these apart, under one label).
	Unknown bool `json:"-"`
}

// Format is a request body format.
type Format int

// Formats of POST /v1/events, chosen by Content-Type.
const (
	FormatJSON            Format = iota // application/json: one event or an array
	FormatNDJSON                        // application/x-ndjson: one event per line
	FormatCloudEvent                    // application/cloudevents+json
	FormatCloudEventBatch               // application/cloudevents-batch+json
)

// FormatOf maps a Content-Type to a Format.
func FormatOf(contentType string) (Format, error) {
	if contentType == "" {
		return FormatJSON, nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, abacus.Errorf(abacus.EINVALID, "Content-Type %q: %v", contentType, err)
	}
	switch mt {
	case "application/json":
		return FormatJSON, nil
	case "application/x-ndjson", "application/ndjson", "application/jsonl":
		return FormatNDJSON, nil
	case "application/cloudevents+json":
		return FormatCloudEvent, nil
	case "application/cloudevents-batch+json":
		return FormatCloudEventBatch, nil
	}
	return 0, abacus.Errorf(abacus.EINVALID, "Content-Type %q is not supported; use application/json, application/x-ndjson, application/cloudevents+json or application/cloudevents-batch+json", mt)
}

// Parser validates events for one tenant at one instant.
type Parser struct {
	TenantID string
	Settings abacus.TenantSettings
	Now      time.Time
	Limits   Limits
	// CustomerNow, when set, gives the time of customers that live on a
	// test clock (ok false for the others): their events default to, and
	// are checked against, the clock's time. IngestTime stays Now.
	CustomerNow func(customer string) (t time.Time, ok bool)

	// slow turns the jsontext fast path off, so that tests can check that
	// both paths decide every input alike.
	slow bool
}

// Parse splits body into events and validates each. Valid events come back
// in order; invalid ones as rejections naming index, id, field and reason.
// An error means the request as a whole is unusable (ETOOLARGE, EINVALID).
func (p *Parser) Parse(format Format, body []byte) ([]abacus.Event, []Rejection, error) {
	return p.ParseAppend(nil, format, body)
}

// ParseAppend is Parse appending the valid events to dst[:0]. The events
// refer to body (their properties), so body must outlive them.
func (p *Parser) ParseAppend(dst []abacus.Event, format Format, body []byte) ([]abacus.Event, []Rejection, error) {
	dec := newDecoder()
	items, err := p.split(dec, format, body)
	if err != nil {
		return nil, nil, err
	}
	if len(items) > p.Limits.MaxEvents {
		return nil, nil, abacus.Errorf(abacus.ETOOLARGE, "%d events in one request; the limit is %d", len(items), p.Limits.MaxEvents)
	}
	if len(items) == 0 {
		return nil, nil, abacus.Errorf(abacus.EINVALID, "the request has no events")
	}
	cloud := format == FormatCloudEvent || format == FormatCloudEventBatch
	events := dst[:0]
	if cap(events) < len(items) {
		events = make([]abacus.Event, 0, len(items))
	}
	var rejected []Rejection
	for i, raw := range items {
		e, rej := p.event(dec, raw, cloud)
		if rej != nil {
			rej.Index = i
			rejected = append(rejected, *rej)
			continue
		}
		events = append(events, e)
	}
	return events, rejected, nil
}

// split returns the raw JSON of each event.
func (p *Parser) split(dec *decoder, format Format, body []byte) ([]json.RawMessage, error) {
	switch format {
	case FormatNDJSON:
		// Lines are split out of body itself, so events refer to the body
		// as they do in the other formats. (A bufio.Scanner, used here
		// before, moves earlier lines when it refills its buffer: bodies
		// over its 64 KiB start lost and repeated events.)
		var out []json.RawMessage
		for rest := body; len(rest) > 0; {
			line := rest
			if i := bytes.IndexByte(rest, '\n'); i >= 0 {
				line, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			if line = bytes.TrimSpace(line); len(line) > 0 {
				out = append(out, json.RawMessage(line))
			}
		}
		return out, nil
	case FormatCloudEvent:
		return []json.RawMessage{bytes.TrimSpace(body)}, nil
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		if out, ok := splitArray(dec, trimmed); ok && !p.slow {
			return out, nil
		}
		var out []json.RawMessage
		if err := json.Unmarshal(trimmed, &out); err != nil {
			return nil, abacus.Errorf(abacus.EINVALID, "body is not a JSON array of events: %v", err)
		}
		return out, nil
	}
	if format == FormatCloudEventBatch {
		return nil, abacus.Errorf(abacus.EINVALID, "a CloudEvents batch must be a JSON array")
	}
	return []json.RawMessage{trimmed}, nil
}

// wireEvent is the native event format.
type wireEvent struct {
	ID         *string         `json:"id"`
	Type       *string         `json:"type"`
	Customer   *string         `json:"customer"`
	Time       *string         `json:"time"`
	Properties json.RawMessage `json:"properties"`
}

// wireCloudEvent is a CloudEvents 1.0 structured event; extension
// attributes are ignored.
type wireCloudEvent struct {
	SpecVersion *string         `json:"specversion"`
	ID          *string         `json:"id"`
	Source      *string         `json:"source"`
	Type        *string         `json:"type"`
	Subject     *string         `json:"subject"`
	Time        *string         `json:"time"`
	Data        json.RawMessage `json:"data"`
}

func reject(id, field, format string, args ...any) *Rejection {
	return &Rejection{ID: id, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// event validates one raw event.
func (p *Parser) event(dec *decoder, raw json.RawMessage, cloud bool) (abacus.Event, *Rejection) {
	var e abacus.Event
	if len(raw) > p.Limits.MaxEventBytes {
		return e, reject(peekID(raw), "", "event is %d bytes; the limit is %d", len(raw), p.Limits.MaxEventBytes)
	}
	var id, typ, customer, tm *string
	var props json.RawMessage
	propsField, customerField := "properties", "customer"
	var w wireEvent
	validated := false
	if !cloud && !p.slow && fastEvent(dec, raw, &w) {
		id, typ, customer, tm, props = w.ID, w.Type, w.Customer, w.Time, w.Properties
		validated = true
	} else if cloud {
		var w wireCloudEvent
		if err := json.Unmarshal(raw, &w); err != nil {
			return e, reject(peekID(raw), "", "not a valid CloudEvent: %s", jsonError(err))
		}
		if w.SpecVersion == nil || *w.SpecVersion != "1.0" {
			return e, reject(deref(w.ID), "specversion", `must be "1.0"`)
		}
		id, typ, customer, tm, props = w.ID, w.Type, w.Subject, w.Time, w.Data
		propsField, customerField = "data", "subject"
	} else {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&w); err != nil {
			rej := reject(peekID(raw), errorField(err), "not a valid event: %s", jsonError(err))
			rej.Unknown = unknownField(err)
			return e, rej
		}
		id, typ, customer, tm, props = w.ID, w.Type, w.Customer, w.Time, w.Properties
	}
	e.ID = deref(id)
	if r := checkString(e.ID, "id", id, abacus.MaxIDLength); r != nil {
		return e, r
	}
	if r := checkString(e.ID, "type", typ, abacus.MaxEventTypeLength); r != nil {
		return e, r
	}
	if r := checkString(e.ID, customerField, customer, abacus.MaxIDLength); r != nil {
		return e, r
	}
	e.TenantID, e.Type, e.Customer = p.TenantID, *typ, *customer
	e.IngestTime = p.Now
	now := p.Now
	if p.CustomerNow != nil {
		if t, ok := p.CustomerNow(e.Customer); ok {
			now = t
		}
	}
	e.Time, e.TimeGiven = now, false
	if tm != nil {
		t, err := time.Parse(time.RFC3339Nano, *tm)
		if err != nil {
			return e, reject(e.ID, "time", "must be an RFC 3339 timestamp such as 2026-03-01T12:00:00.123Z, got %q", *tm)
		}
		if t.After(now.Add(p.Settings.Skew())) {
			return e, reject(e.ID, "time", "%s is more than %s in the future", *tm, humanDuration(p.Settings.Skew()))
		}
		if t.Before(now.Add(-p.Settings.Backdate())) {
			return e, reject(e.ID, "time", "%s is older than the backdating window of %s", *tm, humanDuration(p.Settings.Backdate()))
		}
		e.Time, e.TimeGiven = t.UTC(), true
	}
	props = bytes.TrimSpace(props)
	switch {
	case len(props) == 0 || string(props) == "null":
		e.Properties = []byte("{}")
	case props[0] != '{':
		return e, reject(e.ID, propsField, "must be a JSON object")
	default:
		compact, err := compactObject(props, validated)
		if err != nil {
			return e, reject(e.ID, propsField, "invalid JSON: %s", jsonError(err))
		}
		// Capped: the properties may be the request body's bytes, and an
		// append must not write over the next event's.
		e.Properties = compact[:len(compact):len(compact)]
	}
	return e, nil
}

func checkString(id, field string, v *string, maxLen int) *Rejection {
	if v == nil {
		return reject(id, field, "is required")
	}
	if r := abacus.IDProblem(*v, maxLen); r != "" {
		return reject(id, field, "%s", r)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// peekID extracts "id" from an event that failed to decode, so the
// rejection can still name it.
func peekID(raw json.RawMessage) string {
	var v struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(raw, &v) == nil {
		if s, ok := v.ID.(string); ok && len(s) <= abacus.MaxIDLength {
			return s
		}
	}
	return ""
}

// jsonError rewrites decoding errors into field language.
func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("field %q must be a %s, got %s", te.Field, expected(te.Type.String()), te.Value)
	}
	s := err.Error()
	if strings.HasPrefix(s, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(s, "json: unknown field ") + " (fields are id, type, customer, time, properties)"
	}
	return strings.TrimPrefix(s, "json: ")
}

func expected(goType string) string {
	switch goType {
	case "*string", "string":
		return "string"
	}
	return goType
}

// unknownField: err is encoding/json's refusal of a name events do not have.
func unknownField(err error) bool {
	return strings.HasPrefix(err.Error(), "json: unknown field ")
}

// errorField names the field a decoding error is about, when it says.
func errorField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return strings.Trim(f, `"`)
	}
	return ""
}

// humanDuration prints whole days as days ("35 days") and anything else as
// Go prints durations ("5m0s").
func humanDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	}
	return d.String()
}
