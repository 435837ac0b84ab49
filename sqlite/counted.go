package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
)

// countedLists decides where each event's counted list is stored
// (migration 0006, package countedsets). A list to share that the cache
// does not know is looked up in counted_sets, and added if it is not
// there: after a restart, or once the cache started over, it usually is.
// A list added here is added in the apply transaction: if that does not
// commit, Apply drops the cache (Store.counted), whose ids went with it.
func (t *applyTx) countedLists(ctx context.Context, events []abacus.AppliedEvent) (*countedsets.Batch, error) {
	return t.counted.Lists(events, func(lists []string) (map[string]int64, error) {
		find, err := t.tx.PrepareContext(ctx, `SELECT id FROM counted_sets WHERE counted = ?`)
		if err != nil {
			return nil, err
		}
		defer find.Close()
		add, err := t.tx.PrepareContext(ctx, `INSERT INTO counted_sets(counted) VALUES (?) RETURNING id`)
		if err != nil {
			return nil, err
		}
		defer add.Close()
		ids := make(map[string]int64, len(lists))
		for _, list := range lists {
			var id int64
			err := find.QueryRowContext(ctx, list).Scan(&id)
			if errors.Is(err, sql.ErrNoRows) {
				err = add.QueryRowContext(ctx, list).Scan(&id)
			}
			if err != nil {
				return nil, fmt.Errorf("counted list %s: %w", list, err)
			}
			ids[list] = id
		}
		return ids, nil
	})
}
