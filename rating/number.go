package rating

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/cockroachdb/apd/v3"
)

// Number is a decimal read from JSON without passing through float64: both
// the string form "0.0125" and the bare number form 0.0125 are parsed from
// their literal text, so 0.1 is exactly one tenth. NaN and infinities are
// rejected. The zero Number is 0.
type Number struct {
	apd.Decimal
}

// MustNumber parses s or panics; for tests and literals in code.
func MustNumber(s string) *Number {
	n, err := ParseNumber(s)
	if err != nil {
		panic(err)
	}
	return n
}

// ParseNumber parses a decimal literal such as "12", "-0.5" or "1.5e3". It
// returns an error for anything that is not a finite decimal.
func ParseNumber(s string) (*Number, error) {
	var n Number
	if _, _, err := n.Decimal.SetString(s); err != nil || n.Form != apd.Finite {
		return nil, fmt.Errorf("%q is not a decimal number", s)
	}
	return &n, nil
}

// UnmarshalJSON implements json.Unmarshaler; see Number.
func (n *Number) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		var err error
		if s, err = strconv.Unquote(s); err != nil {
			return fmt.Errorf("bad string %s", b)
		}
	}
	p, err := ParseNumber(s)
	if err != nil {
		return err
	}
	*n = *p
	return nil
}

// MarshalJSON writes the number as a JSON string, so that no reader turns it
// into a float.
func (n Number) MarshalJSON() ([]byte, error) {
	return json.Marshal(n.Decimal.Text('f'))
}

// String returns the plain (non-exponent) decimal text.
func (n *Number) String() string { return n.Decimal.Text('f') }

// fracDigits returns how many significant fractional digits n has.
func (n *Number) fracDigits() int {
	var r apd.Decimal
	r.Reduce(&n.Decimal)
	if r.Exponent >= 0 {
		return 0
	}
	return int(-r.Exponent)
}

func (n *Number) isInteger() bool { return n.fracDigits() == 0 }
