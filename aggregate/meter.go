package aggregate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
	"github.com/cockroachdb/apd/v3"
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

// decodeProperties decodes an event's properties. The common shape (an
// object of strings without escapes, numbers, booleans and nulls, no
// repeated names, valid UTF-8) is read by decodeFlat; anything else goes
// through encoding/json, and the decoded map is the same either way
// (TestDecodeFlatMatchesEncodingJSON, FuzzDecodeFlat).
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

// decodeFlat decodes an object of scalars; ok=false for anything else
// (nested values, escapes in strings, repeated names, invalid UTF-8 or
// JSON), which decodeProperties hands to encoding/json.
//
// It scans the bytes itself: the input is one string allocation, and every
// name and string value is a substring of it. jsontext, which this
// replaced, allocated each name and value and tracked names for duplicates
// in allocated sets: 17 allocations per event of `abacus bench`, a fifth
// of the whole process's allocations, in the aggregator's hottest loop.
func decodeFlat(raw []byte) (properties, bool) {
	if !utf8.Valid(raw) {
		return nil, false
	}
	s := string(raw)
	i := skipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return nil, false
	}
	p := make(properties, 8)
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return p, skipSpace(s, i+1) == len(s)
	}
	for {
		k, j, ok := scanString(s, i)
		if !ok {
			return nil, false
		}
		if i = skipSpace(s, j); i >= len(s) || s[i] != ':' {
			return nil, false
		}
		if i = skipSpace(s, i+1); i >= len(s) {
			return nil, false
		}
		var v any
		switch c := s[i]; {
		case c == '"':
			var str string
			if str, i, ok = scanString(s, i); !ok {
				return nil, false
			}
			v = str
		case c == '-' || c >= '0' && c <= '9':
			j := scanNumber(s, i)
			if j < 0 {
				return nil, false
			}
			v, i = json.Number(s[i:j]), j
		case strings.HasPrefix(s[i:], "true"):
			v, i = true, i+4
		case strings.HasPrefix(s[i:], "false"):
			v, i = false, i+5
		case strings.HasPrefix(s[i:], "null"):
			v, i = nil, i+4
		default:
			return nil, false
		}
		if _, dup := p[k]; dup {
			return nil, false
		}
		p[k] = v
		if i = skipSpace(s, i); i >= len(s) {
			return nil, false
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return p, skipSpace(s, i+1) == len(s)
		default:
			return nil, false
		}
	}
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the string starting at s[i] (a quote) and returns its
// text and the index after it; ok=false unless it is a JSON string with no
// escape (its text is then the bytes between the quotes).
func scanString(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"':
			return s[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// scanNumber returns the index after the JSON number starting at s[i], or
// -1: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func scanNumber(s string, i int) int {
	digits := func(i int) int {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		return j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = digits(i)
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
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
	row    int32       // the aggregator's index of its rollup row (batch.indexRows)
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
