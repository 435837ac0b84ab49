//go:build !cgo

package sqlite

import (
	"errors"
	"net/url"

	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"
)

// driverName is the pure-Go driver, used when the binary is built without
// cgo (CGO_ENABLED=0, or no C compiler on the machine).
const driverName = "sqlite"

// ThroughCgo says whether this build drives SQLite through cgo.
const ThroughCgo = false

const driverDescription = "modernc.org/sqlite (pure Go)"

func dsn(path string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p.name+"("+p.value+")")
	}
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func isUniqueViolation(err error) bool {
	var e *sqlite3.Error
	if errors.As(err, &e) {
		return e.Code() == sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}
