package bufpool

import "testing"

// TestKeep: a buffer goes back to its pool unless over the bound or far
// larger than its use; one a failed request left unused is kept.
func TestKeep(t *testing.T) {
	const maxKeptBody, maxKeptEvents = 512 << 10, 2048
	for _, c := range []struct {
		c, n, max, small int
		want             bool
	}{
		{c: 30 << 10, n: 25 << 10, max: maxKeptBody, small: 64 << 10, want: true},
		{c: maxKeptBody + 1, n: maxKeptBody, max: maxKeptBody, small: 64 << 10, want: false}, // over the bound
		{c: 400 << 10, n: 20 << 10, max: maxKeptBody, small: 64 << 10, want: false},          // far larger than its use
		{c: 400 << 10, n: 0, max: maxKeptBody, small: 64 << 10, want: true},                  // unused: a failed request
		{c: 60 << 10, n: 1, max: maxKeptBody, small: 64 << 10, want: true},                   // small buffers always
		{c: 1000, n: 100, max: maxKeptEvents, small: 256, want: false},
		{c: 1000, n: 300, max: maxKeptEvents, small: 256, want: true},
	} {
		if got := Keep(c.c, c.n, c.max, c.small); got != c.want {
			t.Errorf("Keep(%d, %d, %d, %d) = %v, want %v", c.c, c.n, c.max, c.small, got, c.want)
		}
	}
}
