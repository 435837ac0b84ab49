package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abacus-billing/abacus/internal/migration"
)

// TestReadyChecksVersions: Ready wants exactly the embedded migrations,
// whose numbers need not be contiguous (0003 may land after 0004).
func TestReadyChecksVersions(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ name, sql, want string }{
		{"all applied", ``, ""},
		{"one missing", `DELETE FROM schema_migrations WHERE version = 1`, "sqlite not ready: schema versions ["},
		{"one from a newer binary", `INSERT INTO schema_migrations(version, applied_at) VALUES (999, 0)`, " 999], want ["},
	} {
		s, err := Open(ctx, filepath.Join(t.TempDir(), "abacus.db"))
		if err != nil {
			t.Fatal(err)
		}
		if c.sql != "" {
			if _, err := s.w.ExecContext(ctx, c.sql); err != nil {
				t.Fatal(err)
			}
		}
		err = s.Ready(ctx)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: Ready = %v, want an error containing %q", c.name, err, c.want)
		}
		s.Close()
	}
	if got := migration.Versions(migrations); !strings.HasPrefix(got, "1 2 ") || !strings.Contains(got, " 4") {
		t.Fatalf("embedded versions = %q", got)
	}
}
