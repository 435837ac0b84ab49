// Package sqlite is the embedded store of Abacus: one SQLite file in WAL
// mode, driven through SQLite's C library by cgo (mattn/go-sqlite3) when
// the binary is built with cgo, and through modernc.org/sqlite (pure Go)
// when it is not (docs/ARCHITECTURE.md, "SQLite driver").
//
// Writes go through one connection (SQLite has one writer; BEGIN IMMEDIATE
// makes that explicit instead of failing on lock upgrades), reads through a
// small pool of their own.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
	"github.com/abacus-billing/abacus/internal/migration"
)

//go:embed migrations/*.sql
var migrations embed.FS

// pragmas are set on every connection. synchronous(FULL): configuration
// writes (tenants, keys, meters) are durable once answered; the aggregator
// commits large batches, so the extra fsync per commit is cheap.
// temp_store(MEMORY): every multi-row INSERT keeps a statement journal of
// the pages it changes (to undo just that statement); in a temp file that
// was a pwrite per page, 6% of the aggregator's time under load.
var pragmas = []struct{ name, value string }{
	{"journal_mode", "WAL"},
	{"synchronous", "FULL"},
	{"busy_timeout", "10000"},
	{"foreign_keys", "1"},
	{"cache_size", "-65536"},
	{"temp_store", "MEMORY"},
}

// Driver names the SQLite driver this binary was built with.
const Driver = driverDescription

// Store is the SQLite implementation of abacus.Store.
type Store struct {
	w       *sql.DB // the one writer
	r       *sql.DB // readers
	rollups rollupCache
	counted countedsets.Cache // ids of lists in counted_sets, dropped with a transaction that fails
	stmts   stmtCache         // the aggregator's statements, prepared on w
}

var _ abacus.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and applies
// pending migrations.
func Open(ctx context.Context, path string) (*Store, error) {
	if dir := filepath.Dir(path); dir != "" {
		if err := mkdirAll(dir); err != nil {
			return nil, err
		}
	}
	dsn := dsn(path)
	w, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open(driverName, dsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	s := &Store{w: w, r: r}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.stmts.prepare(ctx, w); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.stmts.close(), s.w.Close(), s.r.Close())
}

// Ready pings the database and checks that exactly the embedded migrations
// are applied: none missing, none from a newer binary.
func (s *Store) Ready(ctx context.Context) error {
	var applied string
	err := s.r.QueryRowContext(ctx, `SELECT COALESCE(group_concat(version, ' ' ORDER BY version), '') FROM schema_migrations`).Scan(&applied)
	if err != nil {
		return fmt.Errorf("sqlite not ready: %w", err)
	}
	if want := migration.Versions(migrations); applied != want {
		return fmt.Errorf("sqlite not ready: schema versions [%s], want [%s]", applied, want)
	}
	return nil
}

// migrate applies the numbered migrations not applied yet, each in its own
// transaction together with its schema_migrations row.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range migration.Files(migrations) {
		version, err := migration.Version(name)
		if err != nil {
			return err
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations(version, applied_at) VALUES (?, strftime('%s','now'))`, version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	}
	return nil
}

// tx runs fn in a write transaction.
func (s *Store) tx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	// Also on a panic in fn, which would otherwise keep the one writer
	// connection; after a commit it is a no-op.
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
