package app

import (
	"strings"
	"testing"
)

// flagCase is one way of setting a runtime flag: args and environment,
// and the value the config must end up with.
type flagCase struct {
	args []string
	env  map[string]string
	want int64
}

// checkFlag parses each case and compares get(config) with its want; then
// bad must be refused with an error containing wantErr.
func checkFlag(t *testing.T, get func(Config) int64, cases []flagCase, bad []string, wantErr string) {
	t.Helper()
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, c := range cases {
		cfg, _, err := ParseConfig("abacus serve", c.args, env(c.env))
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if got := get(cfg); got != c.want {
			t.Errorf("%v %v: %d, want %d", c.args, c.env, got, c.want)
		}
	}
	if _, _, err := ParseConfig("abacus serve", bad, env(nil)); err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("%v: got %v, want an error containing %q", bad, err, wantErr)
	}
}

// TestMemoryLimitFlag: 700 MiB by default, 0 when the Go runtime's own
// GOMEMLIMIT is set, the flag and ABACUS_MEMORY_LIMIT win, and a negative
// value is refused by name.
func TestMemoryLimitFlag(t *testing.T) {
	checkFlag(t, func(c Config) int64 { return c.MemoryLimitMiB }, []flagCase{
		{nil, nil, 700},
		{nil, map[string]string{"GOMEMLIMIT": "2GiB"}, 0},
		{nil, map[string]string{"ABACUS_MEMORY_LIMIT": "512"}, 512},
		{[]string{"--memory-limit", "0"}, nil, 0},
		{[]string{"--memory-limit", "1024"}, map[string]string{"GOMEMLIMIT": "2GiB"}, 1024},
	}, []string{"--memory-limit", "-1"}, "--memory-limit must be a number of MiB, 0 or more, got -1")
}

// TestProcsFlag: twice the runtime's CPUs by default, 0 (the runtime's
// own) when GOMAXPROCS is set, the flag and ABACUS_PROCS win, and a value
// out of range is refused by name.
func TestProcsFlag(t *testing.T) {
	checkFlag(t, func(c Config) int64 { return int64(c.Procs) }, []flagCase{
		{nil, nil, int64(2 * runtimeProcs)},
		{nil, map[string]string{"GOMAXPROCS": "3"}, 0},
		{nil, map[string]string{"ABACUS_PROCS": "6"}, 6},
		{[]string{"--procs", "0"}, nil, 0},
		{[]string{"--procs", "8"}, map[string]string{"GOMAXPROCS": "3"}, 8},
	}, []string{"--procs", "-1"}, "--procs must be 0..1024, got -1")
}

// TestPartitionsFlag: unset (0) leaves the count to the log; a new log
// gets 2 partitions with SQLite and 4 with PostgreSQL (as many as its
// appliers, if more); a value out of range is refused by name.
func TestPartitionsFlag(t *testing.T) {
	checkFlag(t, func(c Config) int64 { return int64(c.Partitions) }, []flagCase{
		{nil, nil, 0},
		{nil, map[string]string{"ABACUS_PARTITIONS": "8"}, 8},
		{[]string{"--partitions", "3"}, map[string]string{"ABACUS_PARTITIONS": "8"}, 3},
	}, []string{"--partitions", "-1"}, "--partitions must be 1..1024 (0: the log's own), got -1")
	pg := "postgres://postgres@127.0.0.1:5432/test"
	checkFlag(t, func(c Config) int64 { return int64(c.NewPartitions()) }, []flagCase{
		{nil, nil, 2},
		{[]string{"--db", pg}, nil, 4},
		{[]string{"--db", pg, "--appliers", "6"}, nil, 6},
		{[]string{"--db", pg, "--appliers", "2"}, nil, 4},
	}, []string{"--partitions", "1025"}, "--partitions must be 1..1024 (0: the log's own), got 1025")
}
