package sqlite

import (
	"encoding/json"
	"testing"

	"github.com/abacus-billing/abacus"
)

// TestAppendCountedMatchesMarshal: the hand-written encoders of the counted
// and skipped columns write exactly what json.Marshal writes.
func TestAppendCountedMatchesMarshal(t *testing.T) {
	counted := [][]abacus.Counted{nil, {{Meter: "calls"}}, {{Meter: "tokens", Group: `{"model":"m-large","region":"eu"}`}, {Meter: "x"}},
		{{Meter: "odd", Group: "{\"k\":\"a<b>&c\\\\\\u0001é\"}"}}}
	for _, cs := range counted {
		want, _ := json.Marshal(cs)
		if cs == nil {
			want = []byte("[]")
		}
		if _, got := appendCounted(nil, cs); got != string(want) {
			t.Errorf("appendCounted(%v) = %s, want %s", cs, got, want)
		}
	}
	skipped := [][]abacus.Skipped{nil, {{Meter: "m", Reason: `value $.tokens is missing`}}, {{Meter: "m", Reason: "tab\there \"quoted\" ünïcode"}}}
	for _, ss := range skipped {
		want, _ := json.Marshal(ss)
		if ss == nil {
			want = []byte("[]")
		}
		if _, got := appendSkipped(nil, ss); got != string(want) {
			t.Errorf("appendSkipped(%v) = %s, want %s", ss, got, want)
		}
	}
}

func TestChunks(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 127, 128, 129, 300, 1000} {
		sum := 0
		for _, c := range chunks(n, 128) {
			if c <= 0 || c > 128 {
				t.Fatalf("chunks(%d) has size %d", n, c)
			}
			sum += c
		}
		if sum != n {
			t.Errorf("chunks(%d) sums to %d", n, sum)
		}
	}
}
