// Package abacus holds the domain of Abacus, a usage-metering and billing
// platform: tenants, API keys, customers, meters, usage events, the store and
// event-log seams, and the one Error type every layer speaks.
//
// Implementations live in packages named after their technology (sqlite,
// postgres, jetstream) or their job (ingest, aggregate, httpapi); they depend
// on this package, never on each other.
package abacus

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. Each maps to exactly one HTTP status in httpapi.
const (
	EINVALID      = "invalid"      // bad input; the message says which field and why
	ENOTFOUND     = "not_found"    // the named thing does not exist (in this tenant)
	ECONFLICT     = "conflict"     // the thing exists, or the change would rewrite history
	EUNAUTHORIZED = "unauthorized" // no or unknown credentials
	EFORBIDDEN    = "forbidden"    // credentials valid, scope too small
	ETOOLARGE     = "too_large"    // a documented size limit was exceeded
	ERATELIMIT    = "rate_limited" // a documented rate limit was exceeded
	EUNAVAILABLE  = "unavailable"  // a dependency (log, store) cannot take the request now; retry
	EINTERNAL     = "internal"     // a bug or an unexpected failure; details are logged, not shown
)

// Error is the error type of the domain. Message is safe to show to API
// clients; internal failures are wrapped with EINTERNAL and never shown.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the client-safe message of err: the message of its
// *Error, or "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Clock tells the time. Everything that depends on "now" takes a Clock so that
// tests (and, later, test clocks) can move time.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now calls f.
func (f ClockFunc) Now() time.Time { return f() }
