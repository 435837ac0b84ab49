// Package migration lists the numbered SQL migrations a store embeds
// (migrations/NNNN_name.sql); each store applies them in its own dialect.
package migration

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Files returns the migrations in fsys in the order they apply: by the
// number their name starts with (names are zero-padded, so name order is
// number order). Numbers need not be contiguous (migrations written on
// parallel branches land in any order), so a database may have a later
// number applied before an earlier one arrives; a store applies whatever is
// missing.
func Files(fsys fs.FS) []string {
	names, _ := fs.Glob(fsys, "migrations/*.sql")
	slices.Sort(names)
	return names
}

// Version is the number a migration's file name starts with.
func Version(name string) (int, error) {
	v, err := strconv.Atoi(strings.SplitN(path.Base(name), "_", 2)[0])
	if err != nil {
		return 0, fmt.Errorf("migrate: bad migration name %s", name)
	}
	return v, nil
}

// Versions is the version of every migration in fsys, ascending, as a
// space-separated list: what a store's schema_migrations must hold.
func Versions(fsys fs.FS) string {
	var vs []string
	for _, name := range Files(fsys) {
		if v, err := Version(name); err == nil {
			vs = append(vs, strconv.Itoa(v))
		}
	}
	return strings.Join(vs, " ")
}
