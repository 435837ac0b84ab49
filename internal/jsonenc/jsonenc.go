// Package jsonenc writes the JSON the aggregator produces for every event
// (group keys, the counted and skipped columns of both stores) byte for
// byte as encoding/json writes it, without reflection in the common case:
// json.Marshal was a visible share of the aggregator's time.
package jsonenc

import (
	"encoding/json"

	"github.com/abacus-billing/abacus"
)

// String appends s as a JSON string, byte for byte what json.Marshal(s)
// writes. Quotes and backslashes are escaped here; other printable ASCII
// is copied; a string with anything else (control characters, non-ASCII,
// the HTML characters json.Marshal escapes) goes through json.Marshal.
func String(buf []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(buf, b...)
		}
	}
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			buf = append(buf, '\\')
		}
		buf = append(buf, s[i])
	}
	return append(buf, '"')
}

// Counted appends the JSON array of cs as json.Marshal writes it, but "[]"
// for none (the column is never null).
func Counted(buf []byte, cs []abacus.Counted) []byte {
	buf = append(buf, '[')
	for i, c := range cs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"meter":`...)
		buf = String(buf, c.Meter)
		if c.Group != "" {
			buf = append(buf, `,"group":`...)
			buf = String(buf, c.Group)
		}
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// Skipped appends the JSON array of ss as json.Marshal writes it, but "[]"
// for none.
func Skipped(buf []byte, ss []abacus.Skipped) []byte {
	buf = append(buf, '[')
	for i, sk := range ss {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"meter":`...)
		buf = String(buf, sk.Meter)
		buf = append(buf, `,"reason":`...)
		buf = String(buf, sk.Reason)
		buf = append(buf, '}')
	}
	return append(buf, ']')
}

// SkippedText is Skipped as a string, encoded in buf (returned for reuse).
// An event no meter skipped, nearly every event, gets the constant "[]":
// the stores write it per event, and converting the two bytes allocated.
func SkippedText(buf []byte, ss []abacus.Skipped) (string, []byte) {
	if len(ss) == 0 {
		return "[]", buf
	}
	buf = Skipped(buf[:0], ss)
	return string(buf), buf
}
