package ingest

import (
	"bytes"
	"encoding/json"

	"github.com/go-json-experiment/json/jsontext"
)

// Decoding without reflection.
//
// encoding/json costs ~2.4 µs for a 280 B event (a Decoder per event, with
// DisallowUnknownFields, into a struct by reflection), plus a full pass to
// split an array into raw events. The fast path below reads the same bytes
// with jsontext (github.com/go-json-experiment/json, the code that became
// encoding/json/v2; see docs/ARCHITECTURE.md, "Dependencies") token by
// token: split the array by value offsets, then read each event's five
// fields. It accepts only the plain shape of an event: an object whose
// names are exactly id, type, customer, time and properties, at most once
// each, with string values (properties: any value), valid UTF-8, no
// escapes in names. Anything else falls back to encoding/json, which then
// decides and words the rejection exactly as before; so the fast path
// changes speed, never outcomes.

// decoder is a jsontext.Decoder with the buffer it reads from, reset for
// each value: jsontext reads a *bytes.Buffer's bytes in place, and a new
// Buffer per event was an allocation per event.
type decoder struct {
	*jsontext.Decoder
	src bytes.Buffer
}

func newDecoder() *decoder {
	d := &decoder{}
	d.Decoder = jsontext.NewDecoder(&d.src)
	return d
}

// reset makes d read b.
func (d *decoder) reset(b []byte, opts ...jsontext.Options) {
	d.src = *bytes.NewBuffer(b)
	d.Reset(&d.src, opts...)
}

// splitArray returns the raw elements of a JSON array, or ok=false when
// body is not one well-formed array (the caller falls back).
func splitArray(dec *decoder, body []byte) (out []json.RawMessage, ok bool) {
	dec.reset(body, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '[' {
		return nil, false
	}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, false
		}
		end := int(dec.InputOffset())
		out = append(out, json.RawMessage(body[end-len(v):end]))
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, false
	}
	// Nothing but whitespace may follow the array.
	if _, err := dec.ReadToken(); err == nil {
		return nil, false
	}
	if len(bytes.TrimSpace(body[dec.InputOffset():])) != 0 {
		return nil, false
	}
	return out, true
}

// fastEvent decodes raw into w when raw has the plain shape (see above);
// ok=false leaves the decision to encoding/json.
//
// The four string fields are substrings of one copy of raw, behind one
// allocated array: two allocations instead of eight. Repeated names inside
// properties are not looked for (encoding/json, the fallback, accepts them
// too, keeping properties raw); repeated event fields are (the fallback
// words that rejection).
func fastEvent(dec *decoder, raw []byte, w *wireEvent) (ok bool) {
	*w = wireEvent{}
	dec.reset(raw, jsontext.AllowDuplicateNames(true))
	var arena string // string(raw), made on the first string field
	var fields *[4]string
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil || bytes.IndexByte(name, '\\') >= 0 {
			return false
		}
		var dst **string
		var field int
		switch string(name) {
		case `"id"`:
			dst, field = &w.ID, 0
		case `"type"`:
			dst, field = &w.Type, 1
		case `"customer"`:
			dst, field = &w.Customer, 2
		case `"time"`:
			dst, field = &w.Time, 3
		case `"properties"`:
			if w.Properties != nil {
				return false
			}
			v, err := dec.ReadValue()
			if err != nil {
				return false
			}
			end := int(dec.InputOffset())
			w.Properties = raw[end-len(v) : end]
			continue
		default:
			return false
		}
		if *dst != nil || dec.PeekKind() != '"' {
			return false
		}
		v, err := dec.ReadValue()
		if err != nil {
			return false
		}
		if fields == nil {
			arena, fields = string(raw), new([4]string)
		}
		s := &fields[field]
		if bytes.IndexByte(v, '\\') < 0 {
			end := int(dec.InputOffset()) - 1
			*s = arena[end-(len(v)-2) : end]
		} else {
			b, err := jsontext.AppendUnquote(nil, v)
			if err != nil {
				return false
			}
			*s = string(b)
		}
		*dst = s
	}
	if _, err := dec.ReadToken(); err != nil {
		return false
	}
	// Nothing may follow the object (the fallback reports what does).
	return len(bytes.TrimSpace(raw[dec.InputOffset():])) == 0
}

// compactObject returns a JSON value with insignificant whitespace removed.
// A value with no whitespace byte at all is already compact and is
// returned as is (it was validated by the decoder that produced it).
func compactObject(v []byte, validated bool) ([]byte, error) {
	if validated && bytes.IndexAny(v, " \t\r\n") < 0 {
		return v, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(v))
	if err := json.Compact(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
