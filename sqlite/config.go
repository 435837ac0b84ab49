package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/abacus-billing/abacus"
)

func mkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called on plain data types
	}
	return string(b)
}

func ns(t time.Time) int64     { return t.UnixNano() }
func fromNS(n int64) time.Time { return time.Unix(0, n).UTC() }
func notFound(what, id string) error {
	return abacus.Errorf(abacus.ENOTFOUND, "%s %q not found", what, id)
}

// CreateTenant stores t.
func (s *Store) CreateTenant(ctx context.Context, t *abacus.Tenant) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO tenants(id, name, settings, created_at) VALUES (?, ?, ?, ?)`,
		t.ID, t.Name, mustJSON(t.Settings), ns(t.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "tenant %q already exists", t.ID)
	}
	return err
}

// FindTenant returns the tenant with id.
func (s *Store) FindTenant(ctx context.Context, id string) (*abacus.Tenant, error) {
	var t abacus.Tenant
	var settings string
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT id, name, settings, created_at FROM tenants WHERE id = ?`, id).
		Scan(&t.ID, &t.Name, &settings, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("tenant", id)
	} else if err != nil {
		return nil, err
	}
	t.CreatedAt = fromNS(created)
	return &t, json.Unmarshal([]byte(settings), &t.Settings)
}

// UpdateTenantSettings replaces the tenant's settings.
func (s *Store) UpdateTenantSettings(ctx context.Context, id string, settings abacus.TenantSettings) error {
	res, err := s.w.ExecContext(ctx, `UPDATE tenants SET settings = ? WHERE id = ?`, mustJSON(settings), id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return notFound("tenant", id)
	}
	return nil
}

// CreateAPIKey stores k.
func (s *Store) CreateAPIKey(ctx context.Context, k *abacus.APIKey) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_keys(id, tenant_id, name, scopes, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.TenantID, k.Name, mustJSON(k.Scopes), k.Prefix, k.Hash, ns(k.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "API key %q already exists", k.ID)
	}
	return err
}

const apiKeyColumns = `id, tenant_id, name, scopes, prefix, hash, created_at`

func scanAPIKey(row interface{ Scan(...any) error }) (*abacus.APIKey, error) {
	var k abacus.APIKey
	var scopes string
	var created int64
	if err := row.Scan(&k.ID, &k.TenantID, &k.Name, &scopes, &k.Prefix, &k.Hash, &created); err != nil {
		return nil, err
	}
	k.CreatedAt = fromNS(created)
	return &k, json.Unmarshal([]byte(scopes), &k.Scopes)
}

// FindAPIKey returns the key with the given hash.
func (s *Store) FindAPIKey(ctx context.Context, hash []byte) (*abacus.APIKey, error) {
	k, err := scanAPIKey(s.r.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, abacus.Errorf(abacus.ENOTFOUND, "API key not found")
	}
	return k, err
}

// ListAPIKeys returns the tenant's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]*abacus.APIKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*abacus.APIKey
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// CreateCustomer stores c. EINVALID if c.TestClock names no clock of the
// tenant: the insert itself checks, so it needs no transaction (and clocks
// are never deleted).
func (s *Store) CreateCustomer(ctx context.Context, c *abacus.Customer) error {
	res, err := s.w.ExecContext(ctx, `INSERT INTO customers(tenant_id, id, name, currency, time_zone, metadata, test_clock, created_at)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
		WHERE ?7 IS NULL OR EXISTS (SELECT 1 FROM test_clocks WHERE tenant_id = ?1 AND id = ?7)`,
		c.TenantID, c.ID, c.Name, c.Currency, c.TimeZone, mustJSON(c.Metadata), nullString(c.TestClock), ns(c.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "customer %q already exists", c.ID)
	} else if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return unknownClock(c.TestClock)
	}
	return nil
}

const customerColumns = `tenant_id, id, name, currency, time_zone, metadata, test_clock, created_at`

func scanCustomer(row interface{ Scan(...any) error }) (*abacus.Customer, error) {
	var c abacus.Customer
	var meta string
	var clock sql.NullString
	var created int64
	if err := row.Scan(&c.TenantID, &c.ID, &c.Name, &c.Currency, &c.TimeZone, &meta, &clock, &created); err != nil {
		return nil, err
	}
	c.TestClock = clock.String
	c.CreatedAt = fromNS(created)
	return &c, json.Unmarshal([]byte(meta), &c.Metadata)
}

// FindCustomer returns one customer.
func (s *Store) FindCustomer(ctx context.Context, tenantID, id string) (*abacus.Customer, error) {
	c, err := scanCustomer(s.r.QueryRowContext(ctx, `SELECT `+customerColumns+` FROM customers WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("customer", id)
	}
	return c, err
}

// ListCustomers returns up to limit customers after the given id.
func (s *Store) ListCustomers(ctx context.Context, tenantID, after string, limit int) ([]*abacus.Customer, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+customerColumns+` FROM customers WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?`, tenantID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*abacus.Customer{}
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CreateMeter stores m and bumps the meters version in the same transaction.
func (s *Store) CreateMeter(ctx context.Context, m *abacus.Meter) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO meters(tenant_id, key, name, description, event_type, aggregation, value_path, group_by, filter, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.TenantID, m.Key, m.Name, m.Description, m.EventType, string(m.Aggregation), m.Value, mustJSON(m.GroupBy), mustJSON(m.Filter), ns(m.CreatedAt))
		if isUniqueViolation(err) {
			return abacus.Errorf(abacus.ECONFLICT, "meter %q already exists", m.Key)
		} else if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'meters_version'`)
		return err
	})
}

const meterColumns = `tenant_id, key, name, description, event_type, aggregation, value_path, group_by, filter, created_at`

func scanMeter(row interface{ Scan(...any) error }) (*abacus.Meter, error) {
	var m abacus.Meter
	var agg, groupBy, filter string
	var created int64
	if err := row.Scan(&m.TenantID, &m.Key, &m.Name, &m.Description, &m.EventType, &agg, &m.Value, &groupBy, &filter, &created); err != nil {
		return nil, err
	}
	m.Aggregation = abacus.Aggregation(agg)
	m.CreatedAt = fromNS(created)
	if err := json.Unmarshal([]byte(groupBy), &m.GroupBy); err != nil {
		return nil, err
	}
	return &m, json.Unmarshal([]byte(filter), &m.Filter)
}

func queryMeters(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*abacus.Meter, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*abacus.Meter{}
	for rows.Next() {
		m, err := scanMeter(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// FindMeter returns one meter.
func (s *Store) FindMeter(ctx context.Context, tenantID, key string) (*abacus.Meter, error) {
	m, err := scanMeter(s.r.QueryRowContext(ctx, `SELECT `+meterColumns+` FROM meters WHERE tenant_id = ? AND key = ?`, tenantID, key))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("meter", key)
	}
	return m, err
}

// ListMeters returns the tenant's meters by key.
func (s *Store) ListMeters(ctx context.Context, tenantID string) ([]*abacus.Meter, error) {
	return queryMeters(ctx, s.r, `SELECT `+meterColumns+` FROM meters WHERE tenant_id = ? ORDER BY key`, tenantID)
}

// RenameMeter changes a meter's name and description.
func (s *Store) RenameMeter(ctx context.Context, tenantID, key, name, description string) (*abacus.Meter, error) {
	res, err := s.w.ExecContext(ctx, `UPDATE meters SET name = ?, description = ? WHERE tenant_id = ? AND key = ?`, name, description, tenantID, key)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, notFound("meter", key)
	}
	return s.FindMeter(ctx, tenantID, key)
}
