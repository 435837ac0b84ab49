// Package app assembles Abacus from its parts — event log, store,
// aggregator, ingest and the HTTP API — and runs it. cmd/abacus and the
// end-to-end tests both start Abacus through Start.
package app

import (
	"cmp"
	"flag"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/ingest"
	"github.com/abacus-billing/abacus/jetstream"
)

// Config is the whole configuration of a server. Every field has a flag and
// an ABACUS_* environment variable (docs/OPERATIONS.md); flags win.
type Config struct {
	DataDir         string               // --data, ABACUS_DATA: default ./abacus-data
	HTTPAddr        string               // --http, ABACUS_HTTP: default 127.0.0.1:8080
	DB              string               // --db, ABACUS_DB: sqlite:PATH (default <data>/abacus.db) or postgres://…
	NATSURL         string               // --nats, ABACUS_NATS: external JetStream; empty = embedded
	Durability      jetstream.Durability // --durability, ABACUS_DURABILITY: strict (default) or relaxed
	AdminKey        string               // --admin-key, ABACUS_ADMIN_KEY: the default tenant's admin key
	LogFormat       string               // --log-format, ABACUS_LOG_FORMAT: text (default) or json
	LogLevel        string               // --log-level, ABACUS_LOG_LEVEL: debug, info (default), warn, error
	Partitions      int                  // --partitions, ABACUS_PARTITIONS: log partitions, fixed per data; 0 (default) = the log's own, or NewPartitions for a new log
	Replicas        int                  // --nats-replicas, ABACUS_NATS_REPLICAS: stream replicas on an external cluster
	Appliers        int                  // --appliers, ABACUS_APPLIERS: concurrent aggregation transactions (default 1 SQLite, 4 PostgreSQL)
	Limits          ingest.Limits        // --max-body-bytes, --max-events, --max-event-bytes
	ShutdownTimeout time.Duration        // --shutdown-timeout, ABACUS_SHUTDOWN_TIMEOUT: default 30s
	GapAlertAfter   time.Duration        // --subscription-gap-alert, ABACUS_SUBSCRIPTION_GAP_ALERT: default 15m
	InvoiceInterval time.Duration        // --invoice-interval, ABACUS_INVOICE_INTERVAL: scheduler period, default 30s; 0 disables it
	MemoryLimitMiB  int64                // --memory-limit, ABACUS_MEMORY_LIMIT: soft limit of the Go runtime in MiB, default 700; 0 = none
	Procs           int                  // --procs, ABACUS_PROCS: the Go runtime's GOMAXPROCS, default twice the CPUs it found; 0 = the runtime's own

	// Clock is "now" for ingest validation and defaults, and for knowledge
	// stamps and barriers (no flag: tests and test clocks set it). Nil is
	// the system clock.
	Clock abacus.Clock
}

// runtimeProcs is the GOMAXPROCS the Go runtime chose at start (the CPUs
// it may use, cgroup limits included), read before Start changes it.
var runtimeProcs = runtime.GOMAXPROCS(0)

// ParseConfig reads flags from args with environment defaults from getenv.
func ParseConfig(name string, args []string, getenv func(string) string) (Config, *flag.FlagSet, error) {
	var c Config
	var err error
	var d time.Duration
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	env := func(k, def string) string { return cmp.Or(getenv("ABACUS_"+k), def) }
	envInt := func(k string, def int) int {
		if v := getenv("ABACUS_" + k); v != "" {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
		return def
	}
	fs.StringVar(&c.DataDir, "data", env("DATA", "./abacus-data"), "data directory (embedded log and SQLite)")
	fs.StringVar(&c.HTTPAddr, "http", env("HTTP", "127.0.0.1:8080"), "HTTP listen address")
	fs.StringVar(&c.DB, "db", env("DB", ""), "store: sqlite:PATH or postgres://… (default sqlite:<data>/abacus.db)")
	fs.StringVar(&c.NATSURL, "nats", env("NATS", ""), "external NATS JetStream URL (default: embedded)")
	durability := fs.String("durability", env("DURABILITY", "strict"), "strict (fsync before 202) or relaxed (fsync every second)")
	fs.StringVar(&c.AdminKey, "admin-key", env("ADMIN_KEY", ""), "admin API key of the default tenant (default: random, written to <data>/admin-key)")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"), "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", env("LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	fs.IntVar(&c.Partitions, "partitions", envInt("PARTITIONS", 0), "event log partitions, fixed for the life of the data (default: the log's; a new log gets 2 with SQLite, 4 with PostgreSQL)")
	fs.IntVar(&c.Replicas, "nats-replicas", envInt("NATS_REPLICAS", 1), "stream replicas on an external JetStream cluster")
	fs.IntVar(&c.Appliers, "appliers", envInt("APPLIERS", 0), "concurrent aggregation transactions (default 1 for SQLite, 4 for PostgreSQL)")
	maxBody := fs.Int64("max-body-bytes", int64(envInt("MAX_BODY_BYTES", 8<<20)), "largest ingest request body")
	fs.IntVar(&c.Limits.MaxEvents, "max-events", envInt("MAX_EVENTS", 10000), "most events in one ingest request")
	fs.IntVar(&c.Limits.MaxEventBytes, "max-event-bytes", envInt("MAX_EVENT_BYTES", 64<<10), "largest single event")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long shutdown waits for in-flight requests")
	gap := fs.String("subscription-gap-alert", env("SUBSCRIPTION_GAP_ALERT", "15m"), "how long a subscription event may wait for its predecessor before the gap is reported")
	invoiceEvery := fs.String("invoice-interval", env("INVOICE_INTERVAL", "30s"), "how often the invoice scheduler runs (0 disables it in this process)")
	// The Go runtime's own GOMEMLIMIT, when set, wins over our default.
	memDefault := 700
	if getenv("GOMEMLIMIT") != "" {
		memDefault = 0
	}
	fs.Int64Var(&c.MemoryLimitMiB, "memory-limit", int64(envInt("MEMORY_LIMIT", memDefault)), "soft memory limit of the Go runtime in MiB: the GC works harder near it (0: none)")
	// Likewise the runtime's own GOMAXPROCS wins over ours.
	procsDefault := 2 * runtimeProcs
	if getenv("GOMAXPROCS") != "" {
		procsDefault = 0
	}
	fs.IntVar(&c.Procs, "procs", envInt("PROCS", procsDefault), "Go runtime GOMAXPROCS (default twice the CPUs; 0: the runtime's own)")
	if err := fs.Parse(args); err != nil {
		return c, fs, err
	}
	if c.InvoiceInterval, err = time.ParseDuration(*invoiceEvery); err != nil || c.InvoiceInterval < 0 {
		return c, fs, fmt.Errorf("--invoice-interval must be a duration such as 30s (0 disables), got %q", *invoiceEvery)
	}
	c.Limits.MaxBodyBytes = *maxBody
	c.Durability = jetstream.Durability(*durability)
	d, err = time.ParseDuration(*gap)
	if err != nil || d <= 0 {
		return c, fs, fmt.Errorf("--subscription-gap-alert must be a positive duration such as 15m, got %q", *gap)
	}
	c.GapAlertAfter = d
	return c, fs, c.normalize()
}

func (c *Config) normalize() error {
	var problems []string
	if c.Durability != jetstream.Strict && c.Durability != jetstream.Relaxed {
		problems = append(problems, fmt.Sprintf("--durability must be strict or relaxed, got %q", c.Durability))
	}
	if c.DB == "" {
		c.DB = "sqlite:" + filepath.Join(c.DataDir, "abacus.db")
	}
	if !strings.HasPrefix(c.DB, "sqlite:") && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		problems = append(problems, fmt.Sprintf("--db must be sqlite:PATH or postgres://…, got %q", c.DB))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("--log-format must be text or json, got %q", c.LogFormat))
	}
	if c.MemoryLimitMiB < 0 {
		problems = append(problems, fmt.Sprintf("--memory-limit must be a number of MiB, 0 or more, got %d", c.MemoryLimitMiB))
	}
	if c.Procs < 0 || c.Procs > 1024 {
		problems = append(problems, fmt.Sprintf("--procs must be 0..1024, got %d", c.Procs))
	}
	if c.Partitions < 0 || c.Partitions > 1024 {
		problems = append(problems, fmt.Sprintf("--partitions must be 1..1024 (0: the log's own), got %d", c.Partitions))
	}
	if c.Appliers == 0 {
		c.Appliers = 1
		if c.IsPostgres() {
			c.Appliers = 4
		}
	}
	if c.Limits.MaxEventBytes > jetstream.MaxMessageBytes/2 {
		problems = append(problems, "--max-event-bytes is too large for one log message")
	}
	c.Limits = c.Limits.Defaults()
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// NewPartitions is the partition count a new log gets when --partitions is
// not given: 2 with SQLite, 4 with PostgreSQL. Every partition is a stream
// with its own fsync'd appends, and a request's events go to the partitions
// of their customers, so on a small machine more partitions mean more,
// smaller appends per event and more fsyncs for each request to wait on
// (docs/BENCHMARKS.md, eighth round: with 8, the old default, SQLite's peak
// accepted 152-156k events/s against 218-235k with 2). SQLite's one
// writer takes every partition; PostgreSQL's appliers take partition p mod
// Appliers, so it needs as many partitions as appliers.
func (c *Config) NewPartitions() int {
	if c.IsPostgres() {
		return max(c.Appliers, 4)
	}
	return 2
}

// IsPostgres reports whether the store is PostgreSQL.
func (c *Config) IsPostgres() bool { return !strings.HasPrefix(c.DB, "sqlite:") }
