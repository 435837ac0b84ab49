package aggregate

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the aggregator, registered on the given registerer.
type Metrics struct {
	EventsApplied   prometheus.Counter
	Duplicates      prometheus.Counter
	Conflicts       prometheus.Counter
	ApplyErrors     prometheus.Counter
	CorruptMessages prometheus.Counter
	Position        *prometheus.GaugeVec
	// ApplySeconds and BatchEvents are per committed transaction; with
	// IdleSeconds (appliers waiting for events) they say whether the
	// aggregator is the bottleneck: an applier that is never idle is.
	ApplySeconds prometheus.Histogram
	BatchEvents  prometheus.Histogram
	IdleSeconds  prometheus.Counter
}

// NewMetrics creates the metrics and registers them on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		EventsApplied:   prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_aggregated_total", Help: "New events committed to the store (first of their id)."}),
		Duplicates:      prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_duplicate_total", Help: "Events whose id was already stored with the same payload; counted nowhere."}),
		Conflicts:       prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_events_conflict_total", Help: "Events whose id was already stored with another payload; the first won."}),
		ApplyErrors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_aggregate_apply_errors_total", Help: "Failed apply transactions (retried)."}),
		CorruptMessages: prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_aggregate_corrupt_messages_total", Help: "Log messages that could not be decoded and were skipped."}),
		Position:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "abacus_aggregate_position", Help: "Last committed log sequence per partition."}, []string{"partition"}),
		ApplySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "abacus_aggregate_apply_seconds", Help: "Duration of committed apply transactions, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		BatchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "abacus_aggregate_batch_events", Help: "Events (log records) per committed apply transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		IdleSeconds: prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_aggregate_idle_seconds_total", Help: "Time appliers spent waiting for events to apply."}),
	}
	if reg != nil {
		reg.MustRegister(m.EventsApplied, m.Duplicates, m.Conflicts, m.ApplyErrors, m.CorruptMessages, m.Position,
			m.ApplySeconds, m.BatchEvents, m.IdleSeconds)
	}
	return m
}
