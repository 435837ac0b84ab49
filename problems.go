package abacus

import (
	"fmt"
	"strings"
)

// Problems collects every validation problem of an input so that one answer
// names them all ("field: reason; field: reason").
type Problems struct {
	list []Problem
}

// Problem is one invalid field.
type Problem struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Add records a problem with field.
func (p *Problems) Add(field, format string, args ...any) {
	p.list = append(p.list, Problem{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// List returns the problems recorded so far.
func (p *Problems) List() []Problem { return p.list }

// Err returns nil when no problem was recorded, otherwise an EINVALID *Error
// whose message lists every problem.
func (p *Problems) Err() error {
	if len(p.list) == 0 {
		return nil
	}
	parts := make([]string, len(p.list))
	for i, x := range p.list {
		parts[i] = x.Field + ": " + x.Reason
	}
	return &Error{Code: EINVALID, Message: strings.Join(parts, "; ")}
}
