package abacus

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Aggregation is how a meter folds event values over a window.
type Aggregation string

// Aggregations. Every one is exact over any window: rollups keep count, sum,
// min, max and the latest value per minute, and unique_count keeps the
// distinct values per minute (see aggregate and docs/ARCHITECTURE.md).
const (
	AggSum         Aggregation = "sum"
	AggCount       Aggregation = "count"
	AggMax         Aggregation = "max"
	AggMin         Aggregation = "min"
	AggAvg         Aggregation = "avg"
	AggLatest      Aggregation = "latest"       // value of the event with the greatest event time
	AggUniqueCount Aggregation = "unique_count" // number of distinct values
)

// Aggregations lists every aggregation, in documentation order.
var Aggregations = []Aggregation{AggSum, AggCount, AggMax, AggMin, AggAvg, AggLatest, AggUniqueCount}

// Meter turns events of one type into a usage quantity per customer.
//
// A meter is immutable in everything that decides what it counts (event
// type, aggregation, value, group_by, filter): changing those would silently
// rewrite history already aggregated. Only Name and Description may change;
// for anything else create a new meter (docs/ARCHITECTURE.md, "Meters").
type Meter struct {
	TenantID    string            `json:"-"`
	Key         string            `json:"key"`
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	EventType   string            `json:"event_type"`
	Aggregation Aggregation       `json:"aggregation"`
	Value       string            `json:"value,omitempty"`    // JSON path into properties; unused by count
	GroupBy     map[string]string `json:"group_by,omitempty"` // dimension name → JSON path
	Filter      []MeterFilter     `json:"filter,omitempty"`   // all must hold for an event to count
	CreatedAt   time.Time         `json:"created_at"`
}

// MeterFilter is one condition on an event property.
//   - op "eq": the property equals Value
//   - op "in": the property equals one of Values
//   - op "exists": the property is present (and not null)
//
// Scalars compare by their canonical text: strings as themselves, numbers as
// written, booleans as true/false.
type MeterFilter struct {
	Path   string            `json:"path"`
	Op     string            `json:"op"`
	Value  json.RawMessage   `json:"value,omitempty"`
	Values []json.RawMessage `json:"values,omitempty"`
}

var (
	keyPattern       = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,127}$`)
	dimensionPattern = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`)
)

// ReservedDimension is the dimension name usage queries use for the customer;
// a meter cannot define a dimension with that name.
const ReservedDimension = "customer"

// Validate reports every problem of m at once.
func (m *Meter) Validate() error {
	var p Problems
	if !keyPattern.MatchString(m.Key) {
		p.Add("key", "must be 1-128 characters of letters, digits, '_', '.', ':' or '-', starting with a letter or digit")
	}
	checkID(&p, "event_type", m.EventType)
	if !slices.Contains(Aggregations, m.Aggregation) {
		p.Add("aggregation", "must be one of sum, count, max, min, avg, latest, unique_count; got %q", m.Aggregation)
	}
	if m.Aggregation == AggCount {
		if m.Value != "" {
			p.Add("value", "must be empty for aggregation count (it counts events)")
		}
	} else if m.Aggregation != "" {
		if m.Value == "" {
			p.Add("value", "is required for aggregation %s", m.Aggregation)
		} else if _, err := ParsePath(m.Value); err != nil {
			p.Add("value", "%v", err)
		}
	}
	if len(m.GroupBy) > 16 {
		p.Add("group_by", "at most 16 dimensions")
	}
	for name, path := range m.GroupBy {
		if !dimensionPattern.MatchString(name) {
			p.Add("group_by."+name, "dimension names are letters, digits and '_', starting with a letter or '_'")
		}
		if name == ReservedDimension {
			p.Add("group_by."+name, "%q is reserved for the customer", ReservedDimension)
		}
		if _, err := ParsePath(path); err != nil {
			p.Add("group_by."+name, "%v", err)
		}
	}
	for i, f := range m.Filter {
		field := "filter[" + strconv.Itoa(i) + "]"
		if _, err := ParsePath(f.Path); err != nil {
			p.Add(field+".path", "%v", err)
		}
		switch f.Op {
		case "eq":
			if _, ok := ScalarText(f.Value); !ok {
				p.Add(field+".value", "must be a string, number or boolean")
			}
		case "in":
			if len(f.Values) == 0 {
				p.Add(field+".values", "must list at least one value")
			}
			for j, v := range f.Values {
				if _, ok := ScalarText(v); !ok {
					p.Add(field+".values["+strconv.Itoa(j)+"]", "must be a string, number or boolean")
				}
			}
		case "exists":
		default:
			p.Add(field+".op", "must be eq, in or exists; got %q", f.Op)
		}
	}
	return p.Err()
}

// ParsePath parses a JSON path into property names. Accepted forms are
// "$.a.b", "a.b" and "$.a" (object members only; names may not contain dots).
func ParsePath(path string) ([]string, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(path, "$"), ".")
	if s == "" {
		return nil, Errorf(EINVALID, "JSON path %q names no property (use e.g. \"$.tokens\")", path)
	}
	parts := strings.Split(s, ".")
	for _, part := range parts {
		if part == "" {
			return nil, Errorf(EINVALID, "JSON path %q has an empty segment", path)
		}
	}
	return parts, nil
}

// ScalarText returns the canonical text of a JSON scalar: a string's value,
// a number's literal, "true" or "false". It reports false for null, objects,
// arrays and invalid JSON.
func ScalarText(raw json.RawMessage) (string, bool) {
	raw = json.RawMessage(strings.TrimSpace(string(raw)))
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", false
		}
		if b {
			return "true", true
		}
		return "false", true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", false
		}
		return n.String(), true
	}
	return "", false
}
