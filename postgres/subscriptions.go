package postgres

// Plans, subscription events and the subscription read models
// (abacus.SubscriptionStore). Rows keep their object as a JSON body plus the
// columns queries filter and sort on (migrations/0002_subscriptions.sql).
// sqlite/subscriptions.go has the same structure.

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/rowbody"
	"github.com/jackc/pgx/v5"
)

// dbReader is what both the pool and a transaction offer: the queries below
// serve Store, which reads through the pool, and subscriptionTx, which must
// read its own uncommitted writes through its transaction.
type dbReader interface {
	querier
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// queryAll returns every row of a query, scanned by scan; an empty slice,
// not nil, when there are none.
func queryAll[T any](ctx context.Context, q querier, scan func(pgx.Row) (*T, error), query string, args ...any) ([]*T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Plans.

const planColumns = `tenant_id, version, body`

func scanPlan(row pgx.Row) (*abacus.Plan, error) {
	var p abacus.Plan
	var tenantID, body string
	var version int
	if err := row.Scan(&tenantID, &version, &body); err != nil {
		return nil, err
	}
	if err := rowbody.Decode(body, &p); err != nil {
		return nil, err
	}
	p.TenantID, p.Version = tenantID, version
	return &p, nil
}

// CreatePlan stores p as the next version of its key and sets p.Version.
//
// Two concurrent CreatePlans of one key would both read the same highest
// version, so each first takes a transaction-scoped advisory lock on the
// key: the second waits for the first to commit, and its SELECT (a new
// snapshot, under READ COMMITTED) then sees the version the first inserted.
// Unrelated keys whose lock ids collide only queue behind each other.
func (s *Store) CreatePlan(ctx context.Context, p *abacus.Plan) error {
	next := *p
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('abacus.plan/' || current_schema() || '/' || $1::text || '/' || $2::text, 0))`,
			p.TenantID, p.Key); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) + 1 FROM plans WHERE tenant_id = $1 AND key = $2`, p.TenantID, p.Key).Scan(&next.Version); err != nil {
			return err
		}
		body, err := rowbody.Encode(&next)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO plans(tenant_id, key, version, body, created_at) VALUES ($1, $2, $3, $4, $5)`,
			p.TenantID, p.Key, next.Version, body, ns(p.CreatedAt))
		return err
	})
	if err == nil {
		p.Version = next.Version
	}
	return err
}

// FindPlan returns one version of a plan, the latest for version 0.
// ENOTFOUND.
func (s *Store) FindPlan(ctx context.Context, tenantID, key string, version int) (*abacus.Plan, error) {
	return findPlan(ctx, s.pool, tenantID, key, version)
}

func findPlan(ctx context.Context, q dbReader, tenantID, key string, version int) (*abacus.Plan, error) {
	query, args := `SELECT `+planColumns+` FROM plans WHERE tenant_id = $1 AND key = $2`, []any{tenantID, key}
	if version == 0 {
		query += ` ORDER BY version DESC LIMIT 1`
	} else {
		query += ` AND version = $3`
		args = append(args, version)
	}
	p, err := scanPlan(q.QueryRow(ctx, query, args...))
	if errors.Is(err, pgx.ErrNoRows) {
		if version == 0 {
			return nil, notFound("plan", key)
		}
		return nil, abacus.Errorf(abacus.ENOTFOUND, "plan %q version %d not found", key, version)
	}
	return p, err
}

// ListPlans returns the latest version of each of the tenant's plans, by key.
func (s *Store) ListPlans(ctx context.Context, tenantID string) ([]*abacus.Plan, error) {
	return queryAll(ctx, s.pool, scanPlan, `SELECT `+planColumns+` FROM plans p
		WHERE tenant_id = $1 AND version = (SELECT MAX(version) FROM plans WHERE tenant_id = p.tenant_id AND key = p.key)
		ORDER BY key`, tenantID)
}

// ListPlanVersions returns every version of a plan, oldest first.
func (s *Store) ListPlanVersions(ctx context.Context, tenantID, key string) ([]*abacus.Plan, error) {
	return queryAll(ctx, s.pool, scanPlan, `SELECT `+planColumns+` FROM plans WHERE tenant_id = $1 AND key = $2 ORDER BY version`, tenantID, key)
}

// Subscription event records.

const subscriptionEventColumns = `tenant_id, body, status, reason, duplicates, applied_at, log_partition, log_seq`

// subscriptionEventOrder orders records by version, unknown (0) last.
const subscriptionEventOrder = ` ORDER BY version = 0, version, received_at, id`

func scanSubscriptionEvent(row pgx.Row) (*abacus.SubscriptionEventRecord, error) {
	var r abacus.SubscriptionEventRecord
	var tenantID, body string
	var applied *int64
	var seq int64
	if err := row.Scan(&tenantID, &body, &r.Status, &r.Reason, &r.Duplicates, &applied, &r.Partition, &seq); err != nil {
		return nil, err
	}
	if err := rowbody.Decode(body, &r.SubscriptionEvent); err != nil {
		return nil, err
	}
	r.TenantID, r.AppliedAt, r.Sequence = tenantID, rowbody.FromNullNS(applied), uint64(seq)
	return &r, nil
}

// FindSubscriptionEvent returns one event record. ENOTFOUND.
func (s *Store) FindSubscriptionEvent(ctx context.Context, tenantID, id string) (*abacus.SubscriptionEventRecord, error) {
	return findSubscriptionEvent(ctx, s.pool, tenantID, id)
}

func findSubscriptionEvent(ctx context.Context, q dbReader, tenantID, id string) (*abacus.SubscriptionEventRecord, error) {
	r, err := scanSubscriptionEvent(q.QueryRow(ctx, `SELECT `+subscriptionEventColumns+` FROM subscription_events WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("subscription event", id)
	}
	return r, err
}

// ListSubscriptionEvents returns the records matching f by version (unknown
// last), then received time, then id.
func (s *Store) ListSubscriptionEvents(ctx context.Context, f abacus.SubscriptionEventFilter) ([]*abacus.SubscriptionEventRecord, error) {
	w := rowbody.Where{Numbered: true}
	w.Add(`tenant_id = ?`, f.TenantID)
	if f.CustomerID != "" {
		w.Add(`customer_id = ?`, f.CustomerID)
	}
	if f.SubscriptionID != "" {
		w.Add(`subscription_id = ?`, f.SubscriptionID)
	}
	if f.Status != "" {
		w.Add(`status = ?`, string(f.Status))
	}
	return queryAll(ctx, s.pool, scanSubscriptionEvent, `SELECT `+subscriptionEventColumns+` FROM subscription_events WHERE `+w.String()+subscriptionEventOrder, w.Args...)
}

// HeldSince returns the held events of every tenant received before t,
// oldest first.
func (s *Store) HeldSince(ctx context.Context, t time.Time) ([]*abacus.SubscriptionEventRecord, error) {
	return queryAll(ctx, s.pool, scanSubscriptionEvent, `SELECT `+subscriptionEventColumns+` FROM subscription_events
		WHERE status = $1 AND received_at < $2 ORDER BY received_at, tenant_id, id`, string(abacus.SubEventHeld), ns(t))
}

// SubscriptionHead returns how far a customer's events are applied.
func (s *Store) SubscriptionHead(ctx context.Context, tenantID, customerID string) (abacus.SubscriptionHead, error) {
	return head(ctx, s.pool, tenantID, customerID)
}

// head returns a customer's head: Version 0 and no EventID if none is stored.
func head(ctx context.Context, q dbReader, tenantID, customerID string) (abacus.SubscriptionHead, error) {
	h := abacus.SubscriptionHead{TenantID: tenantID, CustomerID: customerID}
	err := q.QueryRow(ctx, `SELECT version, event_id FROM subscription_heads WHERE tenant_id = $1 AND customer_id = $2`, tenantID, customerID).
		Scan(&h.Version, &h.EventID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return abacus.SubscriptionHead{}, err
	}
	return h, nil
}

// Subscriptions.

const subscriptionColumns = `tenant_id, body`

func scanSubscription(row pgx.Row) (*abacus.Subscription, error) {
	var sub abacus.Subscription
	var tenantID, body string
	if err := row.Scan(&tenantID, &body); err != nil {
		return nil, err
	}
	if err := rowbody.Decode(body, &sub); err != nil {
		return nil, err
	}
	sub.TenantID = tenantID
	return &sub, nil
}

// FindSubscription returns one subscription. ENOTFOUND.
func (s *Store) FindSubscription(ctx context.Context, tenantID, id string) (*abacus.Subscription, error) {
	return findSubscription(ctx, s.pool, tenantID, id)
}

func findSubscription(ctx context.Context, q dbReader, tenantID, id string) (*abacus.Subscription, error) {
	sub, err := scanSubscription(q.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("subscription", id)
	}
	return sub, err
}

// ListSubscriptions returns a customer's subscriptions by start, then id
// (every customer's when customerID is empty, every tenant's when tenantID
// is also empty: the invoice scheduler's scan).
func (s *Store) ListSubscriptions(ctx context.Context, tenantID, customerID string) ([]*abacus.Subscription, error) {
	return queryAll(ctx, s.pool, scanSubscription, `SELECT `+subscriptionColumns+` FROM subscriptions
		WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR customer_id = $2) ORDER BY start_at, id`, tenantID, customerID)
}

// Charges.

const chargeColumns = `tenant_id, body, superseded_at`

// scanCharge reads SupersededAt from its column: it is set after the body
// is written.
func scanCharge(row pgx.Row) (*abacus.Charge, error) {
	var c abacus.Charge
	var tenantID, body string
	var superseded *int64
	if err := row.Scan(&tenantID, &body, &superseded); err != nil {
		return nil, err
	}
	if err := rowbody.Decode(body, &c); err != nil {
		return nil, err
	}
	c.TenantID, c.SupersededAt = tenantID, rowbody.FromNullNS(superseded)
	return &c, nil
}

// ListCharges returns the charge records matching f by item, then start,
// then recording time.
func (s *Store) ListCharges(ctx context.Context, f abacus.ChargeFilter) ([]*abacus.Charge, error) {
	return listCharges(ctx, s.pool, f)
}

func listCharges(ctx context.Context, q dbReader, f abacus.ChargeFilter) ([]*abacus.Charge, error) {
	w := rowbody.Where{Numbered: true}
	w.Add(`tenant_id = ? AND subscription_id = ?`, f.TenantID, f.SubscriptionID)
	if f.At != nil {
		w.Add(`starts_at <= ? AND (ends_at IS NULL OR ends_at > ?)`, ns(*f.At), ns(*f.At))
	}
	if f.AsOf == nil {
		w.Add(`superseded_at IS NULL`)
	} else {
		w.Add(`recorded_at <= ? AND (superseded_at IS NULL OR superseded_at > ?)`, ns(*f.AsOf), ns(*f.AsOf))
	}
	return queryAll(ctx, q, scanCharge, `SELECT `+chargeColumns+` FROM charges WHERE `+w.String()+` ORDER BY item, starts_at, recorded_at, row_id`, w.Args...)
}

// Alerts.

const alertColumns = `tenant_id, id, kind, subject, message, details, raised_at, resolved_at`

func scanAlert(row pgx.Row) (*abacus.Alert, error) {
	var a abacus.Alert
	var details string
	var raised int64
	var resolved *int64
	if err := row.Scan(&a.TenantID, &a.ID, &a.Kind, &a.Subject, &a.Message, &details, &raised, &resolved); err != nil {
		return nil, err
	}
	if details != "" {
		a.Details = json.RawMessage(details)
	}
	a.RaisedAt, a.ResolvedAt = fromNS(raised), rowbody.FromNullNS(resolved)
	return &a, nil
}

// ListAlerts returns the tenant's alerts, newest first; only unresolved
// ones if openOnly.
func (s *Store) ListAlerts(ctx context.Context, tenantID string, openOnly bool) ([]*abacus.Alert, error) {
	w := rowbody.Where{Numbered: true}
	w.Add(`tenant_id = ?`, tenantID)
	if openOnly {
		w.Add(`resolved_at IS NULL`)
	}
	return queryAll(ctx, s.pool, scanAlert, `SELECT `+alertColumns+` FROM alerts WHERE `+w.String()+` ORDER BY raised_at DESC, id`, w.Args...)
}

// Consumer transactions.

// ApplySubscriptions runs fn in one transaction, as Apply does, and commits
// it if fn returns nil; fn's error rolls everything back and is returned as
// is.
func (s *Store) ApplySubscriptions(ctx context.Context, fn func(abacus.SubscriptionTx) error) error {
	return s.tx(ctx, func(tx pgx.Tx) error { return fn(&subscriptionTx{tx: tx}) })
}

// SubscriptionPositions returns the last applied sequence of each
// subscription log partition.
func (s *Store) SubscriptionPositions(ctx context.Context) (map[int]uint64, error) {
	return s.positions(ctx, "subscription_positions")
}

// subscriptionTx is the write side of one ApplySubscriptions. Its reads go
// through the transaction too, so that they see its writes.
type subscriptionTx struct {
	tx    pgx.Tx
	stamp stamp
}

func (t *subscriptionTx) FindPlan(ctx context.Context, tenantID, key string, version int) (*abacus.Plan, error) {
	return findPlan(ctx, t.tx, tenantID, key, version)
}

func (t *subscriptionTx) FindEvent(ctx context.Context, tenantID, id string) (*abacus.SubscriptionEventRecord, error) {
	return findSubscriptionEvent(ctx, t.tx, tenantID, id)
}

func (t *subscriptionTx) PutEvent(ctx context.Context, r *abacus.SubscriptionEventRecord) error {
	body, err := rowbody.Encode(&r.SubscriptionEvent)
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO subscription_events(tenant_id, id, customer_id, subscription_id, version, previous_id,
			status, reason, duplicates, body, received_at, applied_at, log_partition, log_seq)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT(tenant_id, id) DO UPDATE SET customer_id = excluded.customer_id, subscription_id = excluded.subscription_id,
			version = excluded.version, previous_id = excluded.previous_id, status = excluded.status, reason = excluded.reason,
			duplicates = excluded.duplicates, body = excluded.body, received_at = excluded.received_at, applied_at = excluded.applied_at,
			log_partition = excluded.log_partition, log_seq = excluded.log_seq`,
		r.TenantID, r.ID, r.CustomerID, r.SubscriptionID, r.Version, r.PreviousID,
		string(r.Status), r.Reason, r.Duplicates, body, ns(r.ReceivedAt), rowbody.NullNS(r.AppliedAt), r.Partition, int64(r.Sequence))
	return err
}

// AddDuplicate counts one more duplicate of a stored event. ENOTFOUND.
func (t *subscriptionTx) AddDuplicate(ctx context.Context, tenantID, id string) error {
	tag, err := t.tx.Exec(ctx, `UPDATE subscription_events SET duplicates = duplicates + 1 WHERE tenant_id = $1 AND id = $2`, tenantID, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return notFound("subscription event", id)
	}
	return nil
}

func (t *subscriptionTx) Head(ctx context.Context, tenantID, customerID string) (abacus.SubscriptionHead, error) {
	return head(ctx, t.tx, tenantID, customerID)
}

func (t *subscriptionTx) SetHead(ctx context.Context, h abacus.SubscriptionHead) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO subscription_heads(tenant_id, customer_id, version, event_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT(tenant_id, customer_id) DO UPDATE SET version = excluded.version, event_id = excluded.event_id`,
		h.TenantID, h.CustomerID, h.Version, h.EventID)
	return err
}

// NextHeld returns the customer's held event at version or, failing that,
// the one naming previousID as its predecessor; the first received if
// several match. ENOTFOUND.
func (t *subscriptionTx) NextHeld(ctx context.Context, tenantID, customerID string, version int64, previousID string) (*abacus.SubscriptionEventRecord, error) {
	held := func(cond string, arg any) (*abacus.SubscriptionEventRecord, error) {
		return scanSubscriptionEvent(t.tx.QueryRow(ctx, `SELECT `+subscriptionEventColumns+` FROM subscription_events
			WHERE tenant_id = $1 AND customer_id = $2 AND status = $3 AND `+cond+` ORDER BY received_at, id LIMIT 1`,
			tenantID, customerID, string(abacus.SubEventHeld), arg))
	}
	r, err := held(`version = $4`, version)
	if errors.Is(err, pgx.ErrNoRows) && previousID != "" {
		r, err = held(`previous_id = $4`, previousID)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, abacus.Errorf(abacus.ENOTFOUND, "no held event of customer %q at version %d", customerID, version)
	}
	return r, err
}

func (t *subscriptionTx) AppliedEvents(ctx context.Context, tenantID, subscriptionID string) ([]*abacus.SubscriptionEventRecord, error) {
	return queryAll(ctx, t.tx, scanSubscriptionEvent, `SELECT `+subscriptionEventColumns+` FROM subscription_events
		WHERE tenant_id = $1 AND subscription_id = $2 AND status = $3`+subscriptionEventOrder, tenantID, subscriptionID, string(abacus.SubEventApplied))
}

func (t *subscriptionTx) FindSubscription(ctx context.Context, tenantID, id string) (*abacus.Subscription, error) {
	return findSubscription(ctx, t.tx, tenantID, id)
}

func (t *subscriptionTx) PutSubscription(ctx context.Context, sub *abacus.Subscription) error {
	body, err := rowbody.Encode(sub)
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO subscriptions(tenant_id, id, customer_id, start_at, updated_at, body) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT(tenant_id, id) DO UPDATE SET customer_id = excluded.customer_id, start_at = excluded.start_at,
			updated_at = excluded.updated_at, body = excluded.body`,
		sub.TenantID, sub.ID, sub.CustomerID, ns(sub.StartAt), ns(sub.UpdatedAt), body)
	return err
}

func (t *subscriptionTx) CurrentCharges(ctx context.Context, tenantID, subscriptionID string) ([]*abacus.Charge, error) {
	return listCharges(ctx, t.tx, abacus.ChargeFilter{TenantID: tenantID, SubscriptionID: subscriptionID})
}

// SupersedeCharges marks the current records with these ids superseded at
// tm. Ids without a current record are ignored.
func (t *subscriptionTx) SupersedeCharges(ctx context.Context, tenantID string, ids []string, tm time.Time) error {
	_, err := t.tx.Exec(ctx, `UPDATE charges SET superseded_at = $1
		WHERE tenant_id = $2 AND superseded_at IS NULL AND id = ANY($3::text[])`, ns(tm), tenantID, ids)
	return err
}

// InsertCharges stores new records. ECONFLICT if one's id has a current
// (not superseded) record: the caller must supersede it first.
func (t *subscriptionTx) InsertCharges(ctx context.Context, charges []*abacus.Charge) error {
	for _, c := range charges {
		body, err := rowbody.Encode(c)
		if err != nil {
			return err
		}
		_, err = t.tx.Exec(ctx, `INSERT INTO charges(tenant_id, id, subscription_id, item, starts_at, ends_at, recorded_at, superseded_at, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			c.TenantID, c.ID, c.SubscriptionID, c.Item, ns(c.StartsAt), rowbody.NullNS(c.EndsAt), ns(c.RecordedAt), rowbody.NullNS(c.SupersededAt), body)
		if isUniqueViolation(err) {
			return abacus.Errorf(abacus.ECONFLICT, "charge %q is already recorded and not superseded", c.ID)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// RaiseAlert stores a unless the tenant has an alert with its id.
func (t *subscriptionTx) RaiseAlert(ctx context.Context, a *abacus.Alert) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO alerts(tenant_id, id, kind, subject, message, details, raised_at, resolved_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT(tenant_id, id) DO NOTHING`,
		a.TenantID, a.ID, a.Kind, a.Subject, a.Message, string(a.Details), ns(a.RaisedAt), rowbody.NullNS(a.ResolvedAt))
	return err
}

// Lock takes a transaction-scoped advisory lock on key. Advisory locks are
// per database, so the key includes the schema: deployments (or tests)
// sharing a database in different schemas do not contend.
func (t *subscriptionTx) Lock(ctx context.Context, key string) error {
	_, err := t.tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || $1, 0))`, key)
	return err
}

func (t *subscriptionTx) ResolveAlert(ctx context.Context, tenantID, id string, tm time.Time) error {
	_, err := t.tx.Exec(ctx, `UPDATE alerts SET resolved_at = $1 WHERE tenant_id = $2 AND id = $3 AND resolved_at IS NULL`, ns(tm), tenantID, id)
	return err
}

func (t *subscriptionTx) SetPosition(ctx context.Context, partition int, seq uint64) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO subscription_positions(log_partition, seq) VALUES ($1, $2)
		ON CONFLICT(log_partition) DO UPDATE SET seq = excluded.seq`, partition, int64(seq))
	return err
}
