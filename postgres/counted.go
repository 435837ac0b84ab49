package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/countedsets"
)

// countedLists decides where each event's counted list is stored
// (migration 0006, package countedsets). Lists to share that the cache
// does not know are added to counted_sets, or found there, in one
// statement that commits at once, on a connection of its own
// (Store.lists): a list once added is never rolled back, so every id the
// cache holds is committed. This process's appliers queue for that
// connection, for that statement only, never for each other's apply
// transactions; another process adding the same list at once makes the
// statement wait for its insert (ON CONFLICT). A list whose events'
// transaction then fails stays in counted_sets, unused until its events
// are applied again.
func (s *Store) countedLists(ctx context.Context, events []abacus.AppliedEvent) (*countedsets.Batch, error) {
	return s.counted.Lists(events, func(lists []string) (map[string]int64, error) {
		ids := make(map[string]int64, len(lists))
		// A list another process adds while the statement runs is neither
		// added by it (the conflict) nor visible to it (its snapshot is
		// older): the next statement sees it.
		for attempt := 0; attempt < 3; attempt++ {
			var todo []string
			for _, list := range lists {
				if _, ok := ids[list]; !ok {
					todo = append(todo, list)
				}
			}
			if len(todo) == 0 {
				break
			}
			slices.Sort(todo) // concurrent adds take the unique index's locks in one order
			if err := s.addCounted(ctx, todo, ids); err != nil {
				return nil, err
			}
		}
		return ids, nil
	})
}

// addCounted adds lists to counted_sets, or finds them there, and sets
// their ids in ids.
func (s *Store) addCounted(ctx context.Context, lists []string, ids map[string]int64) error {
	rows, err := s.lists.Query(ctx, `WITH added AS (
		INSERT INTO counted_sets(counted) SELECT unnest($1::text[]) ON CONFLICT (counted) DO NOTHING RETURNING id, counted)
	SELECT id, counted FROM added UNION ALL SELECT id, counted FROM counted_sets WHERE counted = ANY($1::text[])`, lists)
	if err != nil {
		return fmt.Errorf("counted lists: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var list string
		if err := rows.Scan(&id, &list); err != nil {
			return fmt.Errorf("counted lists: %w", err)
		}
		ids[list] = id
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("counted lists: %w", err)
	}
	return nil
}
