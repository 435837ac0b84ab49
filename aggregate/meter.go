package aggregate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/cockroachdb/apd/v3"
	"github.com/go-json-experiment/json/jsontext"
)

// Meter is a meter with its paths parsed, ready to evaluate events. It is
// the one definition of what an event adds to a meter: the aggregator
// evaluates it on every new event, and an as-of usage read (usage.Query
// AsOf) on the stored raw events, both through Rollup.
type Meter struct {
	*abacus.Meter
	value  []string
	dims   []dimension // sorted by name: the group key is canonical
	filter []compiledFilter
}

type dimension struct {
	name string
	path []string
}

type compiledFilter struct {
	path   []string
	op     string
	values []string
}

// CompileMeter compiles m. It fails only on a path that does not parse,
// which a stored meter cannot have.
func CompileMeter(m *abacus.Meter) (*Meter, error) {
	c := &Meter{Meter: m}
	var err error
	if m.Value != "" {
		if c.value, err = abacus.ParsePath(m.Value); err != nil {
			return nil, err
		}
	}
	for name, path := range m.GroupBy {
		p, err := abacus.ParsePath(path)
		if err != nil {
			return nil, err
		}
		c.dims = append(c.dims, dimension{name: name, path: p})
	}
	slices.SortFunc(c.dims, func(a, b dimension) int { return strings.Compare(a.name, b.name) })
	for _, f := range m.Filter {
		p, err := abacus.ParsePath(f.Path)
		if err != nil {
			return nil, err
		}
		cf := compiledFilter{path: p, op: f.Op}
		raws := f.Values
		if f.Op == "eq" {
			raws = []json.RawMessage{f.Value}
		}
		for _, r := range raws {
			s, _ := abacus.ScalarText(r)
			cf.values = append(cf.values, s)
		}
		c.filter = append(c.filter, cf)
	}
	return c, nil
}

// properties is an event's properties decoded once for all its meters.
type properties map[string]any

// The common shape (an object of strings, numbers, booleans and nulls, no
// repeated names, valid UTF-8) is read with jsontext at about a third of
// the cost of encoding/json; anything else (nested values, repeats, invalid
// UTF-8) goes through encoding/json, so the decoded map is the same either
// way.
func decodeProperties(raw []byte) (properties, error) {
	if p, ok := decodeFlat(raw); ok {
		return p, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var p properties
	if err := d.Decode(&p); err != nil {
		return nil, err
	}
	return p, nil
}

// decodeFlat decodes an object of scalars; ok=false for anything else.
func decodeFlat(raw []byte) (properties, bool) {
	d := jsontext.NewDecoder(bytes.NewBuffer(raw))
	if t, err := d.ReadToken(); err != nil || t.Kind() != '{' {
		return nil, false
	}
	p := make(properties, 8)
	for d.PeekKind() != '}' {
		name, err := d.ReadToken()
		if err != nil {
			return nil, false
		}
		k := name.String() // before the next read voids the token
		v, err := d.ReadToken()
		if err != nil {
			return nil, false
		}
		switch v.Kind() {
		case '"':
			p[k] = v.String()
		case '0':
			p[k] = json.Number(v.String())
		case 't':
			p[k] = true
		case 'f':
			p[k] = false
		case 'n':
			p[k] = nil
		default:
			return nil, false
		}
	}
	if _, err := d.ReadToken(); err != nil {
		return nil, false
	}
	if _, err := d.ReadToken(); err != io.EOF {
		return nil, false
	}
	return p, true
}

// lookup follows path through nested objects.
func (p properties) lookup(path []string) (any, bool) {
	var cur any = map[string]any(p)
	for _, k := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// scalarText is the canonical text of a decoded scalar (see abacus.ScalarText).
func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		if v {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// contribution is what one event adds to one meter.
type contribution struct {
	meter  *Meter
	group  string
	value  apd.Decimal // sum, min, max, avg, latest
	unique string      // unique_count
}

// evaluate decides whether the event counts in m. It returns ok=false with
// a reason when the event has m's type but does not count, and ok=false
// with an empty reason when a filter excludes it (that is the meter's
// definition, not a problem of the event).
func (m *Meter) evaluate(p properties, c *contribution) (ok bool, reason string) {
	for _, f := range m.filter {
		v, present := p.lookup(f.path)
		switch f.op {
		case "exists":
			if !present {
				return false, ""
			}
		default:
			s, isScalar := scalarText(v)
			if !present || !isScalar || !slices.Contains(f.values, s) {
				return false, ""
			}
		}
	}
	c.meter = m
	c.group = m.groupKey(p)
	switch m.Aggregation {
	case abacus.AggCount:
		return true, ""
	case abacus.AggUniqueCount:
		v, present := p.lookup(m.value)
		s, isScalar := scalarText(v)
		if !present || !isScalar {
			return false, fmt.Sprintf("value %s is missing or not a string, number or boolean", m.Value)
		}
		if strings.IndexByte(s, 0) >= 0 {
			// PostgreSQL text cannot hold NUL; storing it would fail the
			// batch on every retry and stop the partition.
			return false, fmt.Sprintf("value %s contains a NUL character", m.Value)
		}
		c.unique = s
		return true, ""
	}
	v, present := p.lookup(m.value)
	if !present {
		return false, fmt.Sprintf("value %s is missing", m.Value)
	}
	var text string
	switch v := v.(type) {
	case json.Number:
		text = v.String()
	case string: // numeric strings are accepted: JSON producers often send "12.5"
		text = v
	default:
		return false, fmt.Sprintf("value %s is not a number", m.Value)
	}
	d, err := abacus.ParseQuantity(text)
	if err != nil {
		return false, fmt.Sprintf("value %s: %s", m.Value, abacus.ErrorMessage(err))
	}
	c.value = d
	return true, ""
}

// groupKey is the canonical JSON object of the meter's dimensions: names
// sorted, values as canonical text, null when absent.
func (m *Meter) groupKey(p properties) string {
	if len(m.dims) == 0 {
		return "{}"
	}
	b := make([]byte, 0, 64)
	b = append(b, '{')
	for i, d := range m.dims {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonenc.String(b, d.name)
		b = append(b, ':')
		v, present := p.lookup(d.path)
		s, isScalar := scalarText(v)
		if !present || !isScalar {
			b = append(b, "null"...)
			continue
		}
		b = jsonenc.String(b, s)
	}
	b = append(b, '}')
	return string(b)
}
