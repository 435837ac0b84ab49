package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/aggregate"
	"github.com/abacus-billing/abacus/consume"
	"github.com/abacus-billing/abacus/httpapi"
	"github.com/abacus-billing/abacus/ingest"
	"github.com/abacus-billing/abacus/invoice"
	"github.com/abacus-billing/abacus/jetstream"
	"github.com/abacus-billing/abacus/postgres"
	"github.com/abacus-billing/abacus/sqlite"
	"github.com/abacus-billing/abacus/subscription"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// App is a running Abacus server.
type App struct {
	Config     Config
	Store      abacus.Store
	Log        *jetstream.Log
	Aggregator *aggregate.Aggregator
	Committer  *ingest.Committer
	// SubLog is the subscription log (a sibling of Log), Subscriptions
	// its consumer and Commands the command processor.
	SubLog        *jetstream.Log
	Subscriptions *subscription.Consumer
	Commands      *subscription.Processor
	// Invoices runs invoicing; its scheduler runs every
	// Config.InvoiceInterval until Shutdown.
	Invoices      *invoice.Service
	stopScheduler context.CancelFunc
	schedulerDone chan struct{}
	Logger        *slog.Logger
	// URL is the base URL the API listens on (http://host:port).
	URL string
	// AdminKey is the default tenant's admin key when this start created
	// it (empty otherwise: it was printed on the first start).
	AdminKey string

	listener net.Listener
	http     *http.Server
	served   chan error
}

// OpenStore opens the configured store.
func OpenStore(ctx context.Context, c Config) (abacus.Store, error) {
	if path, ok := strings.CutPrefix(c.DB, "sqlite:"); ok {
		return sqlite.Open(ctx, path)
	}
	return postgres.Open(ctx, c.DB)
}

// NewLogger returns the structured logger the config asks for.
func NewLogger(c Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Start opens the log and the store, bootstraps the default tenant on an
// empty store, starts the aggregator and serves the API. Stop it with
// Shutdown.
func Start(ctx context.Context, c Config, logger *slog.Logger) (_ *App, err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &App{Config: c, Logger: logger, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			a.close() // whatever was opened before the failure
		}
	}()
	if c.MemoryLimitMiB > 0 {
		// A soft limit (docs/OPERATIONS.md, --memory-limit): under load the
		// heap holds large apply batches, and with GOGC alone RSS reached
		// twice the live heap.
		debug.SetMemoryLimit(c.MemoryLimitMiB << 20)
	}
	if c.Procs > 0 {
		// More Ps than CPUs (docs/ARCHITECTURE.md, "GOMAXPROCS"): SQLite's
		// writer spends its transactions in C, and a goroutine in a cgo
		// call holds its P until the runtime's monitor takes it back,
		// which can take milliseconds; with as many Ps as CPUs, request
		// handling waited for a P while a CPU sat idle.
		runtime.GOMAXPROCS(c.Procs)
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if a.Store, err = OpenStore(ctx, c); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if a.AdminKey, err = Bootstrap(ctx, a.Store, c); err != nil {
		return nil, err
	}
	a.Log, err = jetstream.Open(ctx, jetstream.Config{URL: c.NATSURL, Dir: c.DataDir, Durability: c.Durability, Partitions: c.Partitions, NewPartitions: c.NewPartitions(), Replicas: c.Replicas})
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	_, onSQLite := a.Store.(*sqlite.Store)
	// SQLite's one writer pays a transaction's fixed costs in this process:
	// the default half second between transactions. PostgreSQL's appliers
	// run four at once and the server pays most of them: 100 ms, which
	// halved freshness at 70% of the peak for the same CPU per event
	// (docs/ARCHITECTURE.md, "Half a second between transactions").
	interval := time.Duration(0)
	if !onSQLite {
		interval = 100 * time.Millisecond
	}
	// Applier p takes partition p mod Appliers: appliers beyond the log's
	// partitions would stand idle and shrink the others' share of the
	// batch and queue bounds.
	appliers := c.Appliers
	if n := a.Log.Partitions(); appliers > n {
		logger.Info("fewer log partitions than appliers: using one applier per partition", "appliers", appliers, "partitions", n)
		appliers = n
	}
	a.Aggregator = aggregate.New(aggregate.Config{Log: a.Log, Store: a.Store, Appliers: appliers, Clock: c.Clock, Logger: logger,
		Metrics: aggregate.NewMetrics(reg), PinAppliers: onSQLite && sqlite.ThroughCgo, Interval: interval})
	if err := a.Aggregator.Start(ctx); err != nil {
		return nil, err
	}
	if a.SubLog, err = a.Log.Sibling(ctx, "subs"); err != nil {
		return nil, fmt.Errorf("open subscription log: %w", err)
	}
	a.Subscriptions = subscription.NewConsumer(subscription.ConsumerConfig{Log: a.SubLog, Store: a.Store, Clock: c.Clock,
		GapAlertAfter: c.GapAlertAfter, Logger: logger, Metrics: subscription.NewMetrics(reg)})
	if err := a.Subscriptions.Start(ctx); err != nil {
		return nil, err
	}
	a.Commands = subscription.NewProcessor(a.Store, a.SubLog, a.Subscriptions, c.Clock)
	a.Invoices = invoice.NewService(a.Store, c.Clock, logger)
	reg.MustRegister(a.Invoices.Metrics.Collectors()...)
	a.Commands.CustomerNow = a.Invoices.CustomerNow
	reg.MustRegister(lagCollector{a})
	im := ingest.NewMetrics(reg)
	a.Committer = ingest.NewCommitter(ingest.CommitterConfig{Log: a.Log, Metrics: im})
	api := httpapi.New(httpapi.Config{Store: a.Store, Log: a.Log, LogReady: a.Log.Ready, Committer: a.Committer, Aggregator: a.Aggregator,
		Clock: c.Clock, Logger: logger, Limits: c.Limits, Registry: reg, Metrics: im, Commands: a.Commands, Subscriptions: a.Subscriptions, Invoices: a.Invoices})
	if a.listener, err = net.Listen("tcp", c.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	a.URL = "http://" + a.listener.Addr().String()
	a.http = &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	go func() { a.served <- a.http.Serve(a.listener) }()
	if c.InvoiceInterval > 0 {
		sctx, cancel := context.WithCancel(context.Background())
		a.stopScheduler, a.schedulerDone = cancel, make(chan struct{})
		go func() {
			defer close(a.schedulerDone)
			_ = a.Invoices.Run(sctx, c.InvoiceInterval)
		}()
	}
	return a, nil
}

// Shutdown stops accepting requests, waits for in-flight ones (their log
// appends included), lets the aggregator commit the batch in flight, then
// closes the log and the store.
func (a *App) Shutdown(ctx context.Context) error {
	var errs []error
	if a.http != nil {
		if err := a.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		if err := <-a.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
		a.http = nil
	}
	errs = append(errs, a.close())
	return errors.Join(errs...)
}

func (a *App) close() error {
	if a.Committer != nil {
		a.Committer.Close()
	}
	if a.stopScheduler != nil {
		a.stopScheduler()
		<-a.schedulerDone
		a.stopScheduler = nil
	}
	if a.Aggregator != nil {
		a.Aggregator.Stop()
	}
	if a.Subscriptions != nil {
		a.Subscriptions.Stop()
	}
	if a.Log != nil {
		a.Log.Close()
	}
	if a.Store != nil {
		return a.Store.Close()
	}
	return nil
}

// Bootstrap creates the default tenant and its admin key on an empty store
// and returns the key when it created one. A configured AdminKey is always
// made valid (created if its hash is unknown), so deployments can set it
// deterministically. A random key is written to <data>/admin-key (0600).
func Bootstrap(ctx context.Context, s abacus.Store, c Config) (string, error) {
	now := time.Now().UTC()
	_, err := s.FindTenant(ctx, abacus.DefaultTenantID)
	switch {
	case abacus.ErrorCode(err) == abacus.ENOTFOUND:
		if err := s.CreateTenant(ctx, &abacus.Tenant{ID: abacus.DefaultTenantID, Name: "Default", CreatedAt: now}); err != nil {
			return "", fmt.Errorf("bootstrap tenant: %w", err)
		}
	case err != nil:
		return "", fmt.Errorf("bootstrap: %w", err)
	default:
		if c.AdminKey == "" {
			return "", nil
		}
	}
	if c.AdminKey != "" {
		k := httpapi.KeyFor(c.AdminKey, abacus.DefaultTenantID, "admin (configured)", []abacus.Scope{abacus.ScopeAdmin}, now, "key_configured_admin")
		if _, err := s.FindAPIKey(ctx, k.Hash); err == nil {
			return c.AdminKey, nil
		}
		if err := s.CreateAPIKey(ctx, k); err != nil && abacus.ErrorCode(err) != abacus.ECONFLICT {
			return "", fmt.Errorf("bootstrap admin key: %w", err)
		} else if abacus.ErrorCode(err) == abacus.ECONFLICT {
			// A different configured key was set before: keep both valid.
			k.ID = k.ID + "_" + k.Prefix
			if err := s.CreateAPIKey(ctx, k); err != nil {
				return "", fmt.Errorf("bootstrap admin key: %w", err)
			}
		}
		return c.AdminKey, nil
	}
	secret, k := httpapi.NewKey(abacus.DefaultTenantID, "admin (first start)", []abacus.Scope{abacus.ScopeAdmin}, now)
	if err := s.CreateAPIKey(ctx, k); err != nil {
		return "", fmt.Errorf("bootstrap admin key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.DataDir, "admin-key"), []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin key: %w", err)
	}
	return secret, nil
}

// CreateTenant creates a tenant with an admin key and returns the key.
func CreateTenant(ctx context.Context, s abacus.Store, id, name string) (string, error) {
	var p abacus.Problems
	if id == "" || len(id) > 64 || strings.ContainsAny(id, " /\\\t\n") {
		p.Add("name", "must be 1-64 characters without spaces or slashes")
	}
	if err := p.Err(); err != nil {
		return "", err
	}
	now := time.Now().UTC()
	if err := s.CreateTenant(ctx, &abacus.Tenant{ID: id, Name: name, CreatedAt: now}); err != nil {
		return "", err
	}
	secret, k := httpapi.NewKey(id, "admin", []abacus.Scope{abacus.ScopeAdmin}, now)
	return secret, s.CreateAPIKey(ctx, k)
}

// lagCollector exports consumer lag per partition at scrape time.
type lagCollector struct{ a *App }

var (
	lagDesc    = prometheus.NewDesc("abacus_consumer_lag_messages", "Log messages appended but not yet aggregated, per partition.", []string{"partition"}, nil)
	subLagDesc = prometheus.NewDesc("abacus_subscription_consumer_lag_messages", "Subscription log messages appended but not yet applied, per partition.", []string{"partition"}, nil)
)

func (l lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lagDesc; ch <- subLagDesc }

func (l lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for desc, t := range map[*prometheus.Desc]*consume.Tracker{lagDesc: l.a.Aggregator.Tracker, subLagDesc: l.a.Subscriptions.Tracker} {
		lag, _ := t.Lag(ctx)
		for p, n := range lag {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(n), fmt.Sprint(p))
		}
	}
}
