// Package countedsets decides, for both stores, which events' counted
// lists are stored once in the table counted_sets and referred to by id,
// and which stay in the event's row (docs/ARCHITECTURE.md, "Counted
// sets"): the JSON list of the meters an event counted in and its group
// key in each is 40% of an event row in `abacus bench`'s shape, though a
// handful of distinct lists cover most events.
package countedsets

import (
	"cmp"
	"fmt"
	"sync"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/internal/jsonenc"
)

// Min is the shortest list counted_sets holds. A shorter one ("[]" for an
// event no meter counted, or one meter with a one-letter key) stays in its
// event's row: a reference would save a few bytes at the price of a row of
// counted_sets.
const Min = 16

// Max is the longest list counted_sets holds. A longer one (many meters,
// or groups of long values) stays in its event's row: PostgreSQL's unique
// index refuses entries over 2,704 bytes, and an insert it refused would
// fail its apply transaction for good.
const Max = 2000

// Batch is the counted lists of the events of one insert: the distinct
// lists' JSON, the id of each in counted_sets (0 for a list kept in its
// events' rows), and each event's list.
type Batch struct {
	lists  []string
	ids    []int64
	of     []int32 // events[i]'s list is lists[of[i]]
	counts []int
}

// gather returns the lists of events, none of them given an id yet: each
// event's CountedJSON, or its Counted encoded where that is "".
func gather(events []abacus.AppliedEvent) *Batch {
	b := &Batch{of: make([]int32, len(events))}
	index := make(map[string]int32)
	var buf []byte
	for i := range events {
		var k int32
		var ok bool
		if list := events[i].CountedJSON; list != "" {
			k, ok = index[list]
			if !ok {
				k = b.add(index, list)
			}
		} else {
			buf = jsonenc.Counted(buf[:0], events[i].Counted)
			k, ok = index[string(buf)] // no allocation for a lookup
			if !ok {
				k = b.add(index, string(buf))
			}
		}
		b.counts[k]++
		b.of[i] = k
	}
	b.ids = make([]int64, len(b.lists))
	return b
}

// add adds list to b as its next distinct list.
func (b *Batch) add(index map[string]int32, list string) int32 {
	k := int32(len(b.lists))
	index[list] = k
	b.lists = append(b.lists, list)
	b.counts = append(b.counts, 0)
	return k
}

// shared reports whether list k is to be stored once: two or more events
// of the insert have it (counting events that turn out to be repeats) and
// its length is within [Min, Max]. A list seen once stays in its event's row
// unless it is cached, so that a meter grouped by a value unique to each
// event costs no more than before (a row of counted_sets and its index
// entry would cost more than the list in the row).
func (b *Batch) shared(k int) bool {
	return b.counts[k] >= 2 && len(b.lists[k]) >= Min && len(b.lists[k]) <= Max
}

// Row returns what event i's row stores: its list's JSON and 0, or "" and
// the list's id in counted_sets.
func (b *Batch) Row(i int) (string, int64) {
	k := b.of[i]
	if id := b.ids[k]; id != 0 {
		return "", id
	}
	return b.lists[k], 0
}

// Lists decides where each event's counted list is stored: the lists to
// share get their ids from c or, for those c does not hold, from add,
// which finds or adds the lists it is given in counted_sets (each store
// its own way) and returns their ids; c keeps those. Row then gives each
// event's row.
func (c *Cache) Lists(events []abacus.AppliedEvent, add func(lists []string) (map[string]int64, error)) (*Batch, error) {
	b := gather(events)
	missing := c.known(b)
	if len(missing) == 0 {
		return b, nil
	}
	lists := make([]string, len(missing))
	for j, k := range missing {
		lists[j] = b.lists[k]
	}
	ids, err := add(lists)
	if err != nil {
		return nil, err
	}
	for _, k := range missing {
		id, ok := ids[b.lists[k]]
		if !ok {
			return nil, fmt.Errorf("counted list %s: neither added nor found", b.lists[k])
		}
		c.put(b.lists[k], id)
		b.ids[k] = id
	}
	return b, nil
}

// Cache maps lists to their ids in counted_sets, so that storing an event
// whose list is known looks nothing up. A list not cached costs a lookup
// in counted_sets (on PostgreSQL an insert-or-find statement of its own),
// never correctness. Its methods are safe for concurrent use.
type Cache struct {
	mu    sync.Mutex
	ids   map[string]int64
	limit int // lists cached at most; 0 is MaxCached (tests set it)
}

// MaxCached bounds a Cache: when it is full it starts over. At the
// bench's ~250 B a list with its map entry that is ~4 MB, at Max bytes a
// list ~33 MB. `abacus bench` has 20 lists; a meter grouped by a value
// with many distinct values has more.
const MaxCached = 16_384

// SetLimit sets how many lists c holds at most (tests).
func (c *Cache) SetLimit(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limit = n
}

// known sets the id of each list of b that c holds, and returns the
// indexes of the lists to share (shared) that it does not.
func (c *Cache) known(b *Batch) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []int
	for k, list := range b.lists {
		if id, ok := c.ids[list]; ok {
			b.ids[k] = id
		} else if b.shared(k) {
			missing = append(missing, k)
		}
	}
	return missing
}

// put records that list has id.
func (c *Cache) put(list string, id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil || len(c.ids) >= cmp.Or(c.limit, MaxCached) {
		c.ids = make(map[string]int64)
	}
	c.ids[list] = id
}

// Drop empties c: a store whose transaction added lists and did not commit
// drops it, since those ids were rolled back with the transaction.
func (c *Cache) Drop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids = nil
}

// Len is how many lists c holds.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

// Column reads a row's counted list: from counted_sets when the row names
// one (counted_set > 0), from the row otherwise. NULL when the row names a
// list counted_sets does not hold (Missing). It reads the same in both
// stores' SQL.
const Column = `CASE counted_set WHEN 0 THEN counted ELSE (SELECT c.counted FROM counted_sets c WHERE c.id = events.counted_set) END`

// Missing is the error for an event whose row names a list counted_sets
// does not hold, which the stores never write.
func Missing(tenantID, id string) error {
	return fmt.Errorf("event %s/%s: its row names a counted list that counted_sets does not hold", tenantID, id)
}
