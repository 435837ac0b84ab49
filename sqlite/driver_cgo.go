//go:build cgo

package sqlite

import (
	"database/sql"
	"errors"
	"net/url"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// driverName is SQLite's C library through cgo, used whenever the binary
// is built with cgo (the default where a C compiler is installed).
const driverName = "sqlite3_abacus"

// ThroughCgo says whether this build drives SQLite through cgo.
const ThroughCgo = true

const driverDescription = "github.com/mattn/go-sqlite3 (C SQLite through cgo)"

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			for _, p := range pragmas {
				if _, err := c.Exec("PRAGMA "+p.name+" = "+p.value, nil); err != nil {
					return err
				}
			}
			return nil
		},
	})
}

func dsn(path string) string {
	q := url.Values{}
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func isUniqueViolation(err error) bool {
	var e sqlite3.Error
	if errors.As(err, &e) {
		return e.ExtendedCode == sqlite3.ErrConstraintPrimaryKey || e.ExtendedCode == sqlite3.ErrConstraintUnique
	}
	return false
}
