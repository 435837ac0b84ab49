package httpapi

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/abacus-billing/abacus"
)

// TestReadBody: a body is read whole whether or not its length was
// declared, and one over the limit is refused with ETOOLARGE, whatever
// length the client declared.
func TestReadBody(t *testing.T) {
	body := strings.Repeat("0123456789", 300) // 3,000 bytes: more than the undeclared start of 512
	for _, c := range []struct {
		name     string
		declared int64 // -1: not declared
		limit    int64
		want     string // "" : the body
	}{
		{"declared", 3000, 10_000, ""},
		{"undeclared", -1, 10_000, ""},
		{"declared short of the body", 100, 10_000, ""},
		{"at the limit", 3000, 3000, ""},
		{"over the limit", 3000, 2999, "ETOOLARGE"},
		{"over the limit, undeclared", -1, 2999, "ETOOLARGE"},
		{"declares more than the limit", 1 << 40, 10_000, ""},
	} {
		r := httptest.NewRequest("POST", "/v1/events", io.NopCloser(strings.NewReader(body)))
		r.ContentLength = c.declared
		got, err := readBody(httptest.NewRecorder(), r, c.limit)
		var e *abacus.Error
		switch {
		case c.want == "" && (err != nil || string(got) != body):
			t.Errorf("%s: %d bytes, %v", c.name, len(got), err)
		case c.want != "" && (!errors.As(err, &e) || e.Code != abacus.ETOOLARGE):
			t.Errorf("%s: %v, want %s", c.name, err, c.want)
		}
	}
}
