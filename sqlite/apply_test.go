package sqlite

import "testing"

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
