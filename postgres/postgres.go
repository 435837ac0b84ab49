// Package postgres is the server store of Abacus: PostgreSQL through
// pgx/v5's connection pool. It keeps the same schema and semantics as the
// sqlite store and passes the same conformance suite (storetest).
//
// Unlike sqlite, it does the aggregator's bulk work set-based inside the
// server: events, rollups and distinct values go in as arrays (one statement
// per call, not one per row) and rollup merges are done by NUMERIC arithmetic
// in an INSERT ... ON CONFLICT DO UPDATE, so no row is read back into Go.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
	"github.com/abacus-billing/abacus/internal/migration"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is the PostgreSQL implementation of abacus.Store. It is safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
	// lists is one connection of its own for adding counted lists
	// (countedLists), which apply transactions do while they hold a
	// connection of pool: on pool, four appliers holding its four
	// connections would each wait for a fifth.
	lists   *pgxpool.Pool
	counted countedsets.Cache // ids of lists in counted_sets, all committed
}

var _ abacus.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string, as pgx accepts) and applies pending migrations. Tables
// are created in the connection's search_path, so one database can hold
// several stores in different schemas.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return openConfig(ctx, cfg)
}

func openConfig(ctx context.Context, cfg *pgxpool.Config) (*Store, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	one := cfg.Copy()
	one.MaxConns, one.MinConns = 1, 0
	lists, err := pgxpool.NewWithConfig(ctx, one)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool, lists: lists}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the pools, waiting for connections in use to be returned.
// It may be called more than once.
func (s *Store) Close() error {
	s.pool.Close()
	s.lists.Close()
	return nil
}

// Ready checks that the server answers and that exactly the embedded
// migrations are applied: none missing, none from a newer binary.
func (s *Store) Ready(ctx context.Context) error {
	var applied string
	if err := s.pool.QueryRow(ctx, `SELECT COALESCE(string_agg(version::text, ' ' ORDER BY version), '') FROM schema_migrations`).Scan(&applied); err != nil {
		return fmt.Errorf("postgres not ready: %w", err)
	}
	if want := migration.Versions(migrations); applied != want {
		return fmt.Errorf("postgres not ready: schema versions [%s], want [%s]", applied, want)
	}
	return nil
}

// migrate applies the numbered migrations not applied yet, each in its own
// transaction together with its schema_migrations row.
//
// Several processes may start at once against one database. Each migration
// transaction first takes a transaction-scoped advisory lock, keyed by the
// schema, so migrators queue instead of racing: the second one finds the
// version recorded and skips it. schema_migrations itself is created under
// the same lock, because CREATE TABLE IF NOT EXISTS is not safe against a
// concurrent creator (it fails with a unique violation on pg_type).
func (s *Store) migrate(ctx context.Context) error {
	for _, name := range migration.Files(migrations) {
		version, err := migration.Version(name)
		if err != nil {
			return err
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('abacus.migrate.' || current_schema(), 0))`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
				return err
			}
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			// No arguments: pgx sends the file with the simple protocol,
			// which allows several statements in one call.
			if _, err := tx.Exec(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES ($1, $2)`, version, time.Now().Unix())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// tx runs fn in a transaction and commits it if fn returns nil. fn's error
// is returned unwrapped, so that callers can match it.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	// Rollback is a no-op after Commit. Deferred, it also ends the
	// transaction and frees the connection if fn panics. Its error is
	// secondary: the caller gets fn's. WithoutCancel: a cancelled ctx must
	// not leave the transaction open on a pooled connection.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// isUniqueViolation reports whether err is a primary key or unique
// constraint failure (SQLSTATE 23505).
func isUniqueViolation(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}

func notFound(what, id string) error {
	return abacus.Errorf(abacus.ENOTFOUND, "%s %q not found", what, id)
}

func ns(t time.Time) int64     { return t.UnixNano() }
func fromNS(n int64) time.Time { return time.Unix(0, n).UTC() }
