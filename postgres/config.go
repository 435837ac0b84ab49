package postgres

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/abacus-billing/abacus"
	"github.com/jackc/pgx/v5"
)

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called on plain data types
	}
	return string(b)
}

// CreateTenant stores t. ECONFLICT if the id exists.
func (s *Store) CreateTenant(ctx context.Context, t *abacus.Tenant) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO tenants(id, name, settings, created_at) VALUES ($1, $2, $3, $4)`,
		t.ID, t.Name, mustJSON(t.Settings), ns(t.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "tenant %q already exists", t.ID)
	}
	return err
}

// FindTenant returns the tenant with id. ENOTFOUND.
func (s *Store) FindTenant(ctx context.Context, id string) (*abacus.Tenant, error) {
	var t abacus.Tenant
	var settings string
	var created int64
	err := s.pool.QueryRow(ctx, `SELECT id, name, settings, created_at FROM tenants WHERE id = $1`, id).
		Scan(&t.ID, &t.Name, &settings, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("tenant", id)
	} else if err != nil {
		return nil, err
	}
	t.CreatedAt = fromNS(created)
	return &t, json.Unmarshal([]byte(settings), &t.Settings)
}

// UpdateTenantSettings replaces the tenant's settings. ENOTFOUND.
func (s *Store) UpdateTenantSettings(ctx context.Context, id string, settings abacus.TenantSettings) error {
	tag, err := s.pool.Exec(ctx, `UPDATE tenants SET settings = $1 WHERE id = $2`, mustJSON(settings), id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return notFound("tenant", id)
	}
	return nil
}

// CreateAPIKey stores k. ECONFLICT if its id or hash exists.
func (s *Store) CreateAPIKey(ctx context.Context, k *abacus.APIKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys(id, tenant_id, name, scopes, prefix, hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.TenantID, k.Name, mustJSON(k.Scopes), k.Prefix, k.Hash, ns(k.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "API key %q already exists", k.ID)
	}
	return err
}

const apiKeyColumns = `id, tenant_id, name, scopes, prefix, hash, created_at`

func scanAPIKey(row pgx.Row) (*abacus.APIKey, error) {
	var k abacus.APIKey
	var scopes string
	var created int64
	if err := row.Scan(&k.ID, &k.TenantID, &k.Name, &scopes, &k.Prefix, &k.Hash, &created); err != nil {
		return nil, err
	}
	k.CreatedAt = fromNS(created)
	return &k, json.Unmarshal([]byte(scopes), &k.Scopes)
}

// FindAPIKey returns the key with the given hash. ENOTFOUND.
func (s *Store) FindAPIKey(ctx context.Context, hash []byte) (*abacus.APIKey, error) {
	k, err := scanAPIKey(s.pool.QueryRow(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, abacus.Errorf(abacus.ENOTFOUND, "API key not found")
	}
	return k, err
}

// ListAPIKeys returns the tenant's keys, oldest first.
func (s *Store) ListAPIKeys(ctx context.Context, tenantID string) ([]*abacus.APIKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id`, tenantID)
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

// CreateCustomer stores c. ECONFLICT if the id exists in the tenant;
// EINVALID if c.TestClock names no clock of the tenant: the insert itself
// checks, so it needs no transaction (and clocks are never deleted).
func (s *Store) CreateCustomer(ctx context.Context, c *abacus.Customer) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO customers(tenant_id, id, name, currency, time_zone, metadata, test_clock, created_at)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::bigint
		WHERE $7::text IS NULL OR EXISTS (SELECT 1 FROM test_clocks WHERE tenant_id = $1 AND id = $7::text)`,
		c.TenantID, c.ID, c.Name, c.Currency, c.TimeZone, mustJSON(c.Metadata), nullString(c.TestClock), ns(c.CreatedAt))
	if isUniqueViolation(err) {
		return abacus.Errorf(abacus.ECONFLICT, "customer %q already exists", c.ID)
	} else if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return unknownClock(c.TestClock)
	}
	return nil
}

const customerColumns = `tenant_id, id, name, currency, time_zone, metadata, test_clock, created_at`

func scanCustomer(row pgx.Row) (*abacus.Customer, error) {
	var c abacus.Customer
	var meta string
	var clock *string
	var created int64
	if err := row.Scan(&c.TenantID, &c.ID, &c.Name, &c.Currency, &c.TimeZone, &meta, &clock, &created); err != nil {
		return nil, err
	}
	if clock != nil {
		c.TestClock = *clock
	}
	c.CreatedAt = fromNS(created)
	return &c, json.Unmarshal([]byte(meta), &c.Metadata)
}

// FindCustomer returns one customer. ENOTFOUND.
func (s *Store) FindCustomer(ctx context.Context, tenantID, id string) (*abacus.Customer, error) {
	c, err := scanCustomer(s.pool.QueryRow(ctx, `SELECT `+customerColumns+` FROM customers WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("customer", id)
	}
	return c, err
}

// ListCustomers returns up to limit customers with id > after, by id
// (bytewise, as in sqlite: the column collation is "C").
func (s *Store) ListCustomers(ctx context.Context, tenantID, after string, limit int) ([]*abacus.Customer, error) {
	var lim any = limit
	if limit < 0 {
		lim = nil // LIMIT NULL: no limit, as SQLite reads a negative one; PostgreSQL would reject it
	}
	rows, err := s.pool.Query(ctx, `SELECT `+customerColumns+` FROM customers WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`, tenantID, after, lim)
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

// CreateMeter stores m and bumps the meters version in the same
// transaction, so that the aggregator never sees the meter without the new
// version. ECONFLICT if the key exists in the tenant.
func (s *Store) CreateMeter(ctx context.Context, m *abacus.Meter) error {
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO meters(tenant_id, key, name, description, event_type, aggregation, value_path, group_by, filter, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			m.TenantID, m.Key, m.Name, m.Description, m.EventType, string(m.Aggregation), m.Value, mustJSON(m.GroupBy), mustJSON(m.Filter), ns(m.CreatedAt))
		if isUniqueViolation(err) {
			return abacus.Errorf(abacus.ECONFLICT, "meter %q already exists", m.Key)
		} else if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE counters SET value = value + 1 WHERE name = 'meters_version'`)
		return err
	})
}

const meterColumns = `tenant_id, key, name, description, event_type, aggregation, value_path, group_by, filter, created_at`

func scanMeter(row pgx.Row) (*abacus.Meter, error) {
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

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func queryMeters(ctx context.Context, q querier, query string, args ...any) ([]*abacus.Meter, error) {
	rows, err := q.Query(ctx, query, args...)
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

// FindMeter returns one meter. ENOTFOUND.
func (s *Store) FindMeter(ctx context.Context, tenantID, key string) (*abacus.Meter, error) {
	m, err := scanMeter(s.pool.QueryRow(ctx, `SELECT `+meterColumns+` FROM meters WHERE tenant_id = $1 AND key = $2`, tenantID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("meter", key)
	}
	return m, err
}

// ListMeters returns the tenant's meters by key.
func (s *Store) ListMeters(ctx context.Context, tenantID string) ([]*abacus.Meter, error) {
	return queryMeters(ctx, s.pool, `SELECT `+meterColumns+` FROM meters WHERE tenant_id = $1 ORDER BY key`, tenantID)
}

// RenameMeter changes a meter's name and description, the only mutable
// fields. ENOTFOUND.
func (s *Store) RenameMeter(ctx context.Context, tenantID, key, name, description string) (*abacus.Meter, error) {
	m, err := scanMeter(s.pool.QueryRow(ctx, `UPDATE meters SET name = $1, description = $2 WHERE tenant_id = $3 AND key = $4 RETURNING `+meterColumns,
		name, description, tenantID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("meter", key)
	}
	return m, err
}
