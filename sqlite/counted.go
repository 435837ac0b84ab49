package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
)

// countedSets caches rows of counted_sets (migration 0006): the JSON of a
// counted list → its id, so that storing an event whose list is known
// reads nothing. Apply's lock guards it, and Apply drops it when a
// transaction does not commit: the ids of lists that transaction inserted
// were rolled back with it. A list not cached costs one read of
// counted_sets' unique index, never correctness.
type countedSets struct {
	ids   map[string]int64
	limit int // lists cached at most; 0 is maxCountedSets (tests set it)
}

// maxCountedSets bounds the cache (~250 B a list with its map entry, so
// ~4 MB): when it is full it starts over. `abacus bench` has 20 lists;
// a meter grouped by a value with many distinct values has more.
const maxCountedSets = 16_384

func (c *countedSets) drop() { c.ids = nil }

func (c *countedSets) put(list string, id int64) {
	if c.ids == nil || len(c.ids) >= cmp.Or(c.limit, maxCountedSets) {
		c.ids = make(map[string]int64)
	}
	c.ids[list] = id
}

// minCountedSet is the shortest list counted_sets holds. A shorter one
// ("[]" for an event no meter counted, or one meter with a one-letter key)
// stays in its event's row: a reference would save a few bytes at the
// price of a row of counted_sets.
const minCountedSet = 16

// countedBatch is the counted lists of a batch of events: the distinct
// lists' JSON, the id of each in counted_sets (0 for a list kept in its
// event's row), and each event's list.
type countedBatch struct {
	lists []string
	ids   []int64
	of    []int32 // events[i]'s list is lists[of[i]]
}

// row returns what event i's row stores: its list's JSON and 0, or "" and
// the list's id in counted_sets.
func (b *countedBatch) row(i int) (string, int64) {
	k := b.of[i]
	if id := b.ids[k]; id != 0 {
		return "", id
	}
	return b.lists[k], 0
}

// countedLists decides where each event's counted list is stored. A list
// that two or more events of the insert share (counting events that turn
// out to be repeats), or that the cache knows, is stored once in
// counted_sets and referred to by id; a list seen once and not cached (or
// shorter than minCountedSet) stays in its event's row, so that a meter
// grouped by a value unique to each event costs no more than before (a row
// of counted_sets and its index entry would cost more than the list
// inline). A list to share that the cache does not know is looked up in
// counted_sets, and added if it is not there: after a restart or once the
// cache started over, it usually is.
func (t *applyTx) countedLists(ctx context.Context, events []abacus.AppliedEvent) (*countedBatch, error) {
	b := &countedBatch{of: make([]int32, len(events))}
	index := make(map[string]int32)
	var counts []int
	var buf []byte
	for i := range events {
		buf = jsonenc.Counted(buf[:0], events[i].Counted)
		k, ok := index[string(buf)] // no allocation for a lookup
		if !ok {
			k = int32(len(b.lists))
			list := string(buf)
			index[list] = k
			b.lists = append(b.lists, list)
			counts = append(counts, 0)
		}
		counts[k]++
		b.of[i] = k
	}
	b.ids = make([]int64, len(b.lists))
	var find, add *sql.Stmt // prepared on the first list not cached
	defer func() {
		for _, st := range []*sql.Stmt{find, add} {
			if st != nil {
				st.Close()
			}
		}
	}()
	for k, list := range b.lists {
		if id, ok := t.counted.ids[list]; ok {
			b.ids[k] = id
			continue
		}
		if counts[k] < 2 || len(list) < minCountedSet {
			continue
		}
		if find == nil {
			var err error
			if find, err = t.tx.PrepareContext(ctx, `SELECT id FROM counted_sets WHERE counted = ?`); err != nil {
				return nil, err
			}
			if add, err = t.tx.PrepareContext(ctx, `INSERT INTO counted_sets(counted) VALUES (?) RETURNING id`); err != nil {
				return nil, err
			}
		}
		var id int64
		err := find.QueryRowContext(ctx, list).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			err = add.QueryRowContext(ctx, list).Scan(&id)
		}
		if err != nil {
			return nil, fmt.Errorf("counted list %s: %w", list, err)
		}
		t.counted.put(list, id)
		b.ids[k] = id
	}
	return b, nil
}
