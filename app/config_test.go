package app

import (
	"strings"
	"testing"
)

// TestMemoryLimitFlag: 700 MiB by default, 0 when the Go runtime's own
// GOMEMLIMIT is set, the flag and ABACUS_MEMORY_LIMIT win, and a negative
// value is refused by name.
func TestMemoryLimitFlag(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int64
	}{
		{nil, nil, 700},
		{nil, map[string]string{"GOMEMLIMIT": "2GiB"}, 0},
		{nil, map[string]string{"ABACUS_MEMORY_LIMIT": "512"}, 512},
		{[]string{"--memory-limit", "0"}, nil, 0},
		{[]string{"--memory-limit", "1024"}, map[string]string{"GOMEMLIMIT": "2GiB"}, 1024},
	} {
		cfg, _, err := ParseConfig("abacus serve", c.args, env(c.env))
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if cfg.MemoryLimitMiB != c.want {
			t.Errorf("%v %v: memory limit %d MiB, want %d", c.args, c.env, cfg.MemoryLimitMiB, c.want)
		}
	}
	_, _, err := ParseConfig("abacus serve", []string{"--memory-limit", "-1"}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "--memory-limit must be a number of MiB, 0 or more, got -1") {
		t.Fatalf("negative limit: got %v", err)
	}
}

// TestProcsFlag: twice the runtime's CPUs by default, 0 (the runtime's
// own) when GOMAXPROCS is set, the flag and ABACUS_PROCS win, and a value
// out of range is refused by name.
func TestProcsFlag(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int
	}{
		{nil, nil, 2 * runtimeProcs},
		{nil, map[string]string{"GOMAXPROCS": "3"}, 0},
		{nil, map[string]string{"ABACUS_PROCS": "6"}, 6},
		{[]string{"--procs", "0"}, nil, 0},
		{[]string{"--procs", "8"}, map[string]string{"GOMAXPROCS": "3"}, 8},
	} {
		cfg, _, err := ParseConfig("abacus serve", c.args, env(c.env))
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if cfg.Procs != c.want {
			t.Errorf("%v %v: procs %d, want %d", c.args, c.env, cfg.Procs, c.want)
		}
	}
	_, _, err := ParseConfig("abacus serve", []string{"--procs", "-1"}, env(nil))
	if err == nil || !strings.Contains(err.Error(), "--procs must be 0..1024, got -1") {
		t.Fatalf("negative procs: got %v", err)
	}
}
