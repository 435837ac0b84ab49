package countedsets

import (
	"fmt"
	"strings"
	"testing"

	"github.com/abacus-billing/abacus"
)

// TestBatch: a list two events share, within [Min, Max], is to be shared;
// one seen once, "[]", and one longer than Max are not; Row gives each
// event its list's id once set, its JSON otherwise; a cache sets the ids of
// lists it holds, shared or not, and starts over when full.
func TestBatch(t *testing.T) {
	a := []abacus.Counted{{Meter: "tokens", Group: `{"model":"a"}`}}
	b := []abacus.Counted{{Meter: "tokens", Group: `{"model":"b"}`}}
	long := []abacus.Counted{{Meter: "tokens", Group: `{"user":"` + strings.Repeat("x", Max) + `"}`}}
	ev := func(counted []abacus.Counted) abacus.AppliedEvent {
		return abacus.AppliedEvent{Event: abacus.Event{}, Counted: counted}
	}
	events := []abacus.AppliedEvent{ev(a), ev(nil), ev(b), ev(a), ev(nil), ev(long), ev(long)}
	batch := gather(events)
	var shared []string
	for k, list := range batch.lists {
		shared = append(shared, fmt.Sprintf("%s:%v", list[:min(len(list), 30)], batch.shared(k)))
	}
	if got, want := strings.Join(shared, " "), `[{"meter":"tokens","group":"{\:true []:false [{"meter":"tokens","group":"{\:false [{"meter":"tokens","group":"{\:false`; got != want {
		t.Fatalf("shared: %s\nwant:   %s", got, want)
	}
	var c Cache
	c.SetLimit(2)
	c.put(batch.lists[2], 7) // b, seen once but cached
	if missing := c.known(batch); fmt.Sprint(missing) != "[0]" {
		t.Fatalf("missing %v, want [0] (a)", missing)
	}
	batch.ids[0] = 5
	rows := ""
	for i := range events {
		list, id := batch.Row(i)
		rows += fmt.Sprintf("%d:%q ", id, list[:min(len(list), 4)])
	}
	if want := `5:"" 0:"[]" 7:"" 5:"" 0:"[]" 0:"[{\"m" 0:"[{\"m" `; rows != want {
		t.Fatalf("rows %s\nwant %s", rows, want)
	}
	c.put("x", 1)
	c.put("y", 2) // the cache held two: it starts over
	if c.Len() != 1 {
		t.Fatalf("cache holds %d lists, want 1", c.Len())
	}
	c.Drop()
	if c.Len() != 0 {
		t.Fatalf("dropped cache holds %d lists", c.Len())
	}
}

// TestBatchGivenJSON: an event's CountedJSON, when given, is its list as
// is (Counted is not encoded again), and it groups with events whose equal
// list is encoded from Counted.
func TestBatchGivenJSON(t *testing.T) {
	a := []abacus.Counted{{Meter: "tokens", Group: `{"model":"a"}`}}
	given := `[{"meter":"tokens","group":"{\"model\":\"a\"}"}]`
	events := []abacus.AppliedEvent{
		{Counted: a},
		{Counted: a, CountedJSON: given},
		{Counted: nil, CountedJSON: `[{"meter":"given only"}]`},
	}
	batch := gather(events)
	if got := fmt.Sprint(batch.lists, batch.of, batch.counts); got != fmt.Sprint([]string{given, `[{"meter":"given only"}]`}, []int32{0, 0, 1}, []int{2, 1}) {
		t.Fatalf("lists, of, counts: %s", got)
	}
}
