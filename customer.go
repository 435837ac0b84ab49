package abacus

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Customer is someone a tenant bills. ID is chosen by the tenant (its own
// customer id) and is what usage events name in their "customer" field.
//
// Events may name a customer before it is created: they are accepted and
// aggregated under that id, and the usage is there when the customer is
// created (docs/ARCHITECTURE.md, "Unknown customers").
type Customer struct {
	TenantID string            `json:"-"`
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Currency string            `json:"currency,omitempty"`
	TimeZone string            `json:"time_zone"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// TestClock attaches the customer to a test clock at creation (it
	// cannot change): its time is then the clock's (see TestClock).
	TestClock string    `json:"test_clock,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Limits on identifiers shared by customers, events and meters.
const (
	MaxIDLength = 256
)

// Validate reports every problem of c at once. It fills TimeZone with "UTC"
// when empty and upper-cases Currency.
func (c *Customer) Validate() error {
	var p Problems
	checkID(&p, "id", c.ID)
	if utf8.RuneCountInString(c.Name) > 1024 {
		p.Add("name", "must be at most 1024 characters")
	}
	if c.TimeZone == "" {
		c.TimeZone = "UTC"
	}
	if c.TimeZone == "Local" {
		p.Add("time_zone", "must name an IANA zone; \"Local\" would bill in the server's zone")
	} else if _, err := time.LoadLocation(c.TimeZone); err != nil {
		p.Add("time_zone", "unknown IANA time zone %q", c.TimeZone)
	}
	c.Currency = strings.ToUpper(c.Currency)
	if c.Currency != "" && !isCurrencyCode(c.Currency) {
		p.Add("currency", "must be a three-letter ISO 4217 code, got %q", c.Currency)
	}
	if len(c.Metadata) > 50 {
		p.Add("metadata", "at most 50 keys")
	}
	for k, v := range c.Metadata {
		if len(k) > 64 || len(v) > 512 {
			p.Add("metadata."+k, "keys are at most 64 and values at most 512 bytes")
		}
	}
	return p.Err()
}

func isCurrencyCode(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// IDProblem says what is wrong with an identifier (an event id, customer,
// type, subscription id), or "" when nothing is: it must be non-empty, at
// most maxLen bytes of UTF-8, without control characters (PostgreSQL text
// cannot hold NUL, and a value the store refuses would stop a log partition
// on every retry).
func IDProblem(s string, maxLen int) string {
	switch {
	case s == "":
		return "is required"
	case len(s) > maxLen:
		return fmt.Sprintf("must be at most %d bytes, got %d", maxLen, len(s))
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	}
	return ""
}

// checkID validates an identifier (IDProblem) that also must not start or
// end with white space.
func checkID(p *Problems, field, id string) {
	if r := IDProblem(id, MaxIDLength); r != "" {
		p.Add(field, "%s", r)
	} else if strings.TrimSpace(id) != id {
		p.Add(field, "must not start or end with white space")
	}
}
