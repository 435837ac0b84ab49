package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
)

// TestBarrierConcurrent runs apply transactions that stamp and insert
// events while barriers run beside them, on a clock that stands still for a
// millisecond at a time (so that stamps and barriers often read the same
// instant). Right after each barrier it reads the events known by its K;
// once everything has committed it reads them again. Every set must be
// unchanged: a read as of a barrier's K is final.
func TestBarrierConcurrent(t *testing.T) {
	url := TestSchemaURL(t)
	ctx := context.Background()
	// More connections than OpenTestStore allows: every goroutine should
	// have its transaction open at once.
	s, err := Open(ctx, url+"&pool_max_conns=12")
	must(t, err)
	t.Cleanup(func() { s.Close() })
	now := func() time.Time { return time.Now().Truncate(time.Millisecond) }

	const stampers, txs, perTx, barriers, rounds = 6, 25, 4, 3, 20
	type read struct {
		k   time.Time
		ids []string
	}
	known := func(k time.Time) ([]string, error) {
		var ids []string
		err := s.ScanEvents(ctx, abacus.EventFilter{TenantID: "acme", Customer: "c-1", KnownBy: k}, func(e *abacus.Event) error {
			ids = append(ids, e.ID)
			return nil
		})
		slices.Sort(ids)
		return ids, err
	}
	var wg sync.WaitGroup
	errs := make(chan error, stampers+barriers)
	reads := make([][]read, barriers)
	for w := range stampers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range txs {
				err := s.Apply(ctx, func(tx abacus.ApplyTx) error {
					if _, err := tx.Stamp(ctx, now); err != nil {
						return err
					}
					// Hold the transaction open a while after the stamp:
					// a barrier must wait for it.
					time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
					es := make([]abacus.AppliedEvent, perTx)
					for j := range es {
						es[j] = event("acme", fmt.Sprintf("w%d-t%d-e%d", w, i, j), uint64(i), `{}`)
					}
					_, err := tx.InsertEvents(ctx, es)
					time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for b := range barriers {
		wg.Go(func() {
			for range rounds {
				k, err := s.Barrier(ctx, now)
				if err != nil {
					errs <- err
					return
				}
				ids, err := known(k)
				if err != nil {
					errs <- err
					return
				}
				reads[b] = append(reads[b], read{k, ids})
				time.Sleep(time.Duration(b+1) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	all, err := known(time.Time{})
	must(t, err)
	if len(all) != stampers*txs*perTx {
		t.Fatalf("stored %d events, want %d", len(all), stampers*txs*perTx)
	}
	var ks []read
	partial := 0
	for _, rs := range reads {
		for _, r := range rs {
			again, err := known(r.k)
			must(t, err)
			if !slices.Equal(again, r.ids) {
				t.Fatalf("events known by barrier %v: %d right after it, %d at the end", r.k, len(r.ids), len(again))
			}
			if len(r.ids) > 0 && len(r.ids) < len(all) {
				partial++
			}
			ks = append(ks, r)
		}
	}
	// Later barriers know at least as much, and the test saw barriers in
	// the middle of the load (else it proved nothing).
	slices.SortFunc(ks, func(a, b read) int { return a.k.Compare(b.k) })
	for i := 1; i < len(ks); i++ {
		if len(ks[i].ids) < len(ks[i-1].ids) {
			t.Fatalf("barrier %v knows %d events, the earlier %v knew %d", ks[i].k, len(ks[i].ids), ks[i-1].k, len(ks[i-1].ids))
		}
	}
	if partial < 5 {
		t.Fatalf("only %d of %d barriers fell in the middle of the load", partial, len(ks))
	}
}
