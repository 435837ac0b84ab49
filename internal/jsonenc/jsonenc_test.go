package jsonenc

import (
	"encoding/json"
	"testing"

	"github.com/abacus-billing/abacus"
)

func TestStringMatchesMarshal(t *testing.T) {
	for _, s := range []string{"", "plain", `{"model":"m-large"}`, `back\slash`, "tab\t", "a<b>&c", "é", "\xff", "\u2028", "\x7f"} {
		checkSame(t, s)
	}
}

func FuzzString(f *testing.F) {
	f.Add(`{"k":"v"}`)
	f.Fuzz(checkSame)
}

func checkSame(t *testing.T, s string) {
	want, _ := json.Marshal(s)
	if got := String(nil, s); string(got) != string(want) {
		t.Fatalf("String(%q) = %s, want %s", s, got, want)
	}
}

// TestCountedSkippedMatchMarshal: the hand-written encoders of the counted
// and skipped columns write exactly what json.Marshal writes.
func TestCountedSkippedMatchMarshal(t *testing.T) {
	counted := [][]abacus.Counted{nil, {{Meter: "calls"}}, {{Meter: "tokens", Group: `{"model":"m-large","region":"eu"}`}, {Meter: "x"}},
		{{Meter: "odd", Group: "{\"k\":\"a<b>&c\\\\\\u0001é\"}"}}}
	for _, cs := range counted {
		want, _ := json.Marshal(cs)
		if cs == nil {
			want = []byte("[]")
		}
		if got := string(Counted(nil, cs)); got != string(want) {
			t.Errorf("Counted(%v) = %s, want %s", cs, got, want)
		}
	}
	skipped := [][]abacus.Skipped{nil, {{Meter: "m", Reason: `value $.tokens is missing`}}, {{Meter: "m", Reason: "tab\there \"quoted\" ünïcode"}}}
	for _, ss := range skipped {
		want, _ := json.Marshal(ss)
		if ss == nil {
			want = []byte("[]")
		}
		if got := string(Skipped(nil, ss)); got != string(want) {
			t.Errorf("Skipped(%v) = %s, want %s", ss, got, want)
		}
		if got, _ := SkippedText([]byte("leftover"), ss); got != string(want) {
			t.Errorf("SkippedText(%v) = %s, want %s", ss, got, want)
		}
	}
}
