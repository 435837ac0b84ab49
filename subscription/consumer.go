package subscription

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/consume"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultGapAlertAfter is how long a held event may wait for its
// predecessor before the gap is reported.
const DefaultGapAlertAfter = 15 * time.Minute

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	Log   abacus.EventLog // the subscription log
	Store abacus.Store
	Clock abacus.Clock
	// GapAlertAfter is how long a held event waits before its gap is
	// reported (default DefaultGapAlertAfter).
	GapAlertAfter time.Duration
	Logger        *slog.Logger
	Metrics       *Metrics
}

// Consumer applies the subscription log to the store: per customer, strictly
// in version order, each event exactly once.
//
// Exactly once: one log message is applied in one store transaction that
// also records the partition's position, so a crash before the commit
// redelivers the message and a crash after it redelivers nothing; an event
// id already stored is a duplicate and changes nothing.
type Consumer struct {
	cfg ConsumerConfig
	// Tracker publishes the committed position of every partition.
	*consume.Tracker
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewConsumer returns a Consumer; call Start.
func NewConsumer(cfg ConsumerConfig) *Consumer {
	cfg.GapAlertAfter = cmp.Or(cfg.GapAlertAfter, DefaultGapAlertAfter)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Clock == nil {
		cfg.Clock = abacus.SystemClock{}
	}
	return &Consumer{cfg: cfg, Tracker: consume.NewTracker(cfg.Log)}
}

// Start reads every partition from its stored position and starts the gap
// checker.
func (c *Consumer) Start(ctx context.Context) error {
	pos, err := c.cfg.Store.SubscriptionPositions(ctx)
	if err != nil {
		return fmt.Errorf("subscriptions: read positions: %w", err)
	}
	if err := c.Load(ctx, "subscriptions", pos); err != nil {
		return err
	}
	ctx, c.cancel = context.WithCancel(ctx)
	for p := 0; p < c.cfg.Log.Partitions(); p++ {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			consume.ReadLoop(ctx, c.cfg.Log, p, pos[p], c.cfg.Logger, func(m abacus.LogMessage) error {
				return c.applyRetrying(ctx, m)
			})
		}()
	}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.gapLoop(ctx) }()
	return nil
}

// Stop stops reading and waits for the transaction in flight.
func (c *Consumer) Stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
}

// applyRetrying applies one message until it commits: a message is never
// skipped, so a store outage stops the partition instead of losing order.
func (c *Consumer) applyRetrying(ctx context.Context, m abacus.LogMessage) error {
	for attempt := 0; ; attempt++ {
		err := c.Apply(context.WithoutCancel(ctx), m)
		if err == nil {
			return nil
		}
		c.cfg.Metrics.ApplyErrors.Inc()
		c.cfg.Logger.Error("apply subscription events failed; retrying", "partition", m.Partition, "seq", m.Sequence, "attempt", attempt, "err", err)
		consume.Sleep(ctx, time.Duration(min(attempt+1, 10))*100*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// EncodeMessage is the log message holding events (all of one partition).
func EncodeMessage(events []*abacus.SubscriptionEvent) ([]byte, error) {
	return json.Marshal(events)
}

// Apply applies one log message of subscription events in one transaction.
// It is exported for tests that drive a consumer by hand.
func (c *Consumer) Apply(ctx context.Context, m abacus.LogMessage) error {
	var events []*abacus.SubscriptionEvent
	if err := json.Unmarshal(m.Data, &events); err != nil {
		// Only Abacus writes this log; a message it cannot read is a bug
		// or corruption. Skipping it would lose changes silently, so stop.
		return fmt.Errorf("subscription log partition %d seq %d: undecodable message: %w", m.Partition, m.Sequence, err)
	}
	var counts outcomes
	err := c.cfg.Store.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error {
		counts = outcomes{}
		// recorded_at, superseded_at and applied_at are the transaction's
		// knowledge stamp, taken first (before any Lock) under the shared
		// knowledge lock: charges read as of a barrier's K then never
		// change, since every transaction stamped ≤ K has committed when
		// the barrier returns and every later one stamps > K.
		now, err := tx.Stamp(ctx, c.cfg.Clock.Now)
		if err != nil {
			return err
		}
		a := applier{tx: tx, now: now, counts: &counts}
		for _, e := range events {
			if err := a.receive(ctx, e, m.Partition, m.Sequence); err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
		}
		return tx.SetPosition(ctx, m.Partition, m.Sequence)
	})
	if err != nil {
		return err
	}
	c.cfg.Metrics.observe(counts)
	c.Commit(map[int]uint64{m.Partition: m.Sequence})
	return nil
}

type outcomes struct{ applied, rejected, held, duplicate int }

// applier applies events inside one transaction.
type applier struct {
	tx     abacus.SubscriptionTx
	now    time.Time
	counts *outcomes
}

// receive stores an arriving event and applies it, and every held event it
// unblocks, if its turn has come.
//
// Places in a customer's order: an event claims version v directly, or the
// place after its previous_id. The first event to take a place (applied,
// or rejected in turn) holds it; every other claim on it is rejected as
// "taken", and so is everything chained after a rejected claim (a forked
// chain), so that no event waits for a place that can no longer come.
func (a *applier) receive(ctx context.Context, e *abacus.SubscriptionEvent, partition int, seq uint64) error {
	tx := a.tx
	// Lock order everywhere: event id, then customer, then subscription.
	if err := tx.Lock(ctx, "sev:"+e.TenantID+":"+e.ID); err != nil {
		return err
	}
	if _, err := tx.FindEvent(ctx, e.TenantID, e.ID); err == nil {
		a.counts.duplicate++
		return tx.AddDuplicate(ctx, e.TenantID, e.ID)
	} else if abacus.ErrorCode(err) != abacus.ENOTFOUND {
		return err
	}
	if err := tx.Lock(ctx, customerLock(e.TenantID, e.CustomerID)); err != nil {
		return err
	}
	rec := &abacus.SubscriptionEventRecord{SubscriptionEvent: *e, Partition: partition, Sequence: seq}
	head, err := tx.Head(ctx, e.TenantID, e.CustomerID)
	if err != nil {
		return err
	}
	if rec.Version == 0 && rec.PreviousID != "" {
		prev, err := tx.FindEvent(ctx, e.TenantID, rec.PreviousID)
		switch {
		case abacus.ErrorCode(err) == abacus.ENOTFOUND:
			// unknown yet: held until it arrives
		case err != nil:
			return err
		case prev.CustomerID != rec.CustomerID:
			return a.reject(ctx, rec, head, fmt.Sprintf("previous_id %s is an event of customer %s, not %s", prev.ID, prev.CustomerID, rec.CustomerID))
		case prev.Status == abacus.SubEventHeld:
			// its predecessor waits: so does it
		case prev.AppliedAt == nil:
			return a.reject(ctx, rec, head, brokenChain(prev.ID))
		default:
			rec.Version = prev.Version + 1
		}
	}
	switch {
	case rec.Version == 0 || rec.Version > head.Version+1:
		rec.Status = abacus.SubEventHeld
		a.counts.held++
		return tx.PutEvent(ctx, rec)
	case rec.Version <= head.Version:
		return a.reject(ctx, rec, head, "")
	}
	if err := a.inTurn(ctx, rec, &head); err != nil {
		return err
	}
	// Apply what was waiting for this event, in order.
	for {
		next, err := tx.NextHeld(ctx, head.TenantID, head.CustomerID, head.Version+1, head.EventID)
		if abacus.ErrorCode(err) == abacus.ENOTFOUND {
			break
		} else if err != nil {
			return err
		}
		next.Version = head.Version + 1
		if err := a.inTurn(ctx, next, &head); err != nil {
			return err
		}
	}
	return tx.SetHead(ctx, head)
}

// reject records rec as rejected without a place in the order: its place
// was taken (reason "") or its chain is broken. The held events chained
// after it can never apply, so they are rejected with it.
func (a *applier) reject(ctx context.Context, rec *abacus.SubscriptionEventRecord, head abacus.SubscriptionHead, reason string) error {
	if reason == "" {
		reason = fmt.Sprintf("version %d is taken: customer %s's events are applied up to version %d (event %s)", rec.Version, rec.CustomerID, head.Version, head.EventID)
	}
	rec.Status, rec.Reason, rec.AppliedAt = abacus.SubEventRejected, reason, nil
	a.counts.rejected++
	if err := a.tx.PutEvent(ctx, rec); err != nil {
		return err
	}
	next, err := a.tx.NextHeld(ctx, rec.TenantID, rec.CustomerID, -1, rec.ID)
	if abacus.ErrorCode(err) == abacus.ENOTFOUND {
		return nil
	} else if err != nil {
		return err
	}
	return a.reject(ctx, next, head, brokenChain(rec.ID))
}

func brokenChain(prev string) string {
	return fmt.Sprintf("its predecessor %s was rejected without taking a place in the order", prev)
}

// inTurn applies rec, whose version is head.Version+1, and advances head.
func (a *applier) inTurn(ctx context.Context, rec *abacus.SubscriptionEventRecord, head *abacus.SubscriptionHead) error {
	tx := a.tx
	if err := tx.Lock(ctx, "sub:"+rec.TenantID+":"+rec.SubscriptionID); err != nil {
		return err
	}
	history, err := tx.AppliedEvents(ctx, rec.TenantID, rec.SubscriptionID)
	if err != nil {
		return err
	}
	events := make([]*abacus.SubscriptionEvent, 0, len(history)+1)
	for _, h := range history {
		events = append(events, &h.SubscriptionEvent)
	}
	events = append(events, &rec.SubscriptionEvent)
	var sub *abacus.Subscription
	var charges []*abacus.Charge
	if len(history) > 0 && history[0].CustomerID != rec.CustomerID {
		// Another customer's subscription: its order is not this one's.
		err = reject("subscription %s belongs to customer %s, not %s", rec.SubscriptionID, history[0].CustomerID, rec.CustomerID)
	} else {
		sub, charges, err = Derive(events, func(ref abacus.PlanRef) (*abacus.Plan, error) {
			return tx.FindPlan(ctx, rec.TenantID, ref.Key, ref.Version)
		})
	}
	var rej *RejectError
	switch {
	case errors.As(err, &rej):
		rec.Status, rec.Reason = abacus.SubEventRejected, rej.Reason
		a.counts.rejected++
	case err != nil:
		return err
	default:
		sub.TenantID = rec.TenantID
		if err := a.store(ctx, sub, charges); err != nil {
			return err
		}
		rec.Status, rec.Reason = abacus.SubEventApplied, ""
		a.counts.applied++
	}
	rec.AppliedAt = &a.now
	if err := tx.PutEvent(ctx, rec); err != nil {
		return err
	}
	predecessor := head.EventID
	head.Version, head.EventID = rec.Version, rec.ID
	// Other held claims on the place just taken (by version, or as the
	// successor of its predecessor; the first place has none) can never
	// apply.
	for {
		other, err := tx.NextHeld(ctx, rec.TenantID, rec.CustomerID, rec.Version, predecessor)
		if abacus.ErrorCode(err) == abacus.ENOTFOUND {
			break
		} else if err != nil {
			return err
		}
		other.Version = rec.Version
		if err := a.reject(ctx, other, *head, ""); err != nil {
			return err
		}
	}
	return tx.ResolveAlert(ctx, rec.TenantID, GapAlertID(rec.CustomerID, rec.Version), a.now)
}

func customerLock(tenant, customer string) string { return "cus:" + tenant + ":" + customer }

// store writes the derived subscription and turns the stored charge records
// into the derived ones: records no longer true are superseded, new ones
// recorded; records that stay true are left as they are.
func (a *applier) store(ctx context.Context, sub *abacus.Subscription, charges []*abacus.Charge) error {
	tx := a.tx
	tenant := sub.TenantID
	sub.UpdatedAt = a.now
	if err := tx.PutSubscription(ctx, sub); err != nil {
		return err
	}
	current, err := tx.CurrentCharges(ctx, tenant, sub.ID)
	if err != nil {
		return err
	}
	supersede, insert := Diff(current, charges)
	if len(supersede) > 0 {
		if err := tx.SupersedeCharges(ctx, tenant, supersede, a.now); err != nil {
			return err
		}
	}
	for _, c := range insert {
		c.TenantID, c.RecordedAt = tenant, a.now
	}
	if len(insert) > 0 {
		return tx.InsertCharges(ctx, insert)
	}
	return nil
}

// GapAlertID names the alert for a customer whose event at version is
// missing.
func GapAlertID(customer string, version int64) string {
	return abacus.AlertSubscriptionGap + ":" + customer + ":" + strconv.FormatInt(version, 10)
}

// gapLoop reports held events older than the bound, a few times per bound.
func (c *Consumer) gapLoop(ctx context.Context) {
	every := min(max(c.cfg.GapAlertAfter/4, 100*time.Millisecond), 30*time.Second)
	for ctx.Err() == nil {
		if err := c.CheckGaps(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("subscription gap check failed", "err", err)
		}
		consume.Sleep(ctx, every)
	}
}

// CheckGaps raises an alert for every customer with an event held longer
// than the bound, and sets the open-gaps gauge. Each alert is raised in a
// transaction holding the customer's lock, after checking that the event
// is still held and the version still missing: otherwise a gap filled
// between the scan and the alert would leave a false alert open.
func (c *Consumer) CheckGaps(ctx context.Context) error {
	now := c.cfg.Clock.Now().UTC()
	held, err := c.cfg.Store.HeldSince(ctx, now.Add(-c.cfg.GapAlertAfter))
	if err != nil {
		return err
	}
	type key struct{ tenant, customer string }
	open := map[key]bool{}
	for _, r := range held {
		k := key{r.TenantID, r.CustomerID}
		if open[k] {
			continue
		}
		err := c.cfg.Store.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error {
			if err := tx.Lock(ctx, customerLock(r.TenantID, r.CustomerID)); err != nil {
				return err
			}
			still, err := tx.FindEvent(ctx, r.TenantID, r.ID)
			if err != nil || still.Status != abacus.SubEventHeld {
				return err
			}
			head, err := tx.Head(ctx, r.TenantID, r.CustomerID)
			if err != nil {
				return err
			}
			open[k] = true
			missing := head.Version + 1
			details, _ := json.Marshal(map[string]any{"customer": r.CustomerID, "missing_version": missing,
				"applied_version": head.Version, "held_event": r.ID, "held_since": r.ReceivedAt})
			return tx.RaiseAlert(ctx, &abacus.Alert{
				TenantID: r.TenantID, ID: GapAlertID(r.CustomerID, missing), Kind: abacus.AlertSubscriptionGap, Subject: r.CustomerID,
				Message: fmt.Sprintf("customer %s: subscription event %s has waited since %s for version %d, which has not arrived",
					r.CustomerID, r.ID, stamp(r.ReceivedAt), missing),
				Details: details, RaisedAt: now,
			})
		})
		if err != nil {
			return err
		}
	}
	c.cfg.Metrics.GapsOpen.Set(float64(len(open)))
	return nil
}

// GapAlertAfter returns the configured bound.
func (c *Consumer) GapAlertAfter() time.Duration { return c.cfg.GapAlertAfter }

// Metrics of the subscription consumer.
type Metrics struct {
	Events      *prometheus.CounterVec
	ApplyErrors prometheus.Counter
	GapsOpen    prometheus.Gauge
}

// NewMetrics registers the metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "abacus_subscription_events_total",
			Help: "Subscription events received by the consumer, by outcome (applied, rejected, held, duplicate)."}, []string{"outcome"}),
		ApplyErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_subscription_apply_errors_total",
			Help: "Failed subscription-consumer transactions (retried)."}),
		GapsOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "abacus_subscription_gaps_open",
			Help: "Customers with a subscription event held past the gap bound."}),
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.ApplyErrors, m.GapsOpen)
	}
	return m
}

func (m *Metrics) observe(o outcomes) {
	m.Events.WithLabelValues("applied").Add(float64(o.applied))
	m.Events.WithLabelValues("rejected").Add(float64(o.rejected))
	m.Events.WithLabelValues("held").Add(float64(o.held))
	m.Events.WithLabelValues("duplicate").Add(float64(o.duplicate))
}
