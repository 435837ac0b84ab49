package subscription_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/subscription"
)

// scenario is one CRM-shaped history, the order in which its events reach
// the consumer, and the exact expected outcome.
type scenario struct {
	name string
	// history names the history; scenarios with the same history must end
	// with the same charge ids (whatever the delivery order).
	history string
	build   func() *crm
	deliver func(c *crm) []message
	events  map[string]wantEvent
	subs    map[string]wantSub
	// extra runs further checks; it may deliver itself (then deliver is nil).
	extra func(t *testing.T, w *world, c *crm)
}

type wantSub struct {
	version int64
	last    string
	endsAt  string // "" open
	charges []wantCharge
}

// The CRM histories of the scenarios.

// upgradeThenCancel: start on basic Jan 1, upgrade to pro Jan 16, cancel at
// the period end (Feb 1).
func upgradeThenCancel() *crm {
	c := newCRM("acme")
	c.sub("c1", "s1").
		Start("e1", ts("2026-01-01"), "basic").
		Upgrade("e2", ts("2026-01-16"), "pro").
		Cancel("e3", ts("2026-02-01"))
	return c
}

var upgradeThenCancelWant = map[string]wantSub{"s1": {version: 3, last: "e3", endsAt: "2026-02-01", charges: []wantCharge{
	{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-01-16", Event: "e1"},
	{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-01-16", Event: "e1"},
	{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-01-16", To: "2026-02-01", Event: "e2"},
	{Item: "calls", Plan: "pro@1", From: "2026-01-16", To: "2026-02-01", Event: "e2"},
}}}

var upgradeThenCancelEvents = map[string]wantEvent{"e1": applied(1), "e2": applied(2), "e3": applied(3)}

// lateChange: start on basic Jan 1, upgrade to pro from Mar 1, then (newer
// word from the CRM, version 3) change to team from Feb 1: team decides the
// plan from Feb 1 on, so the pro change no longer shows.
func lateChange() *crm {
	c := newCRM("acme")
	c.sub("c1", "s1").
		Start("e1", ts("2026-01-01"), "basic").
		Upgrade("e2", ts("2026-03-01"), "pro").
		LateChange("e3", ts("2026-02-01"), "team")
	return c
}

var lateChangeWant = map[string]wantSub{"s1": {version: 3, last: "e3", charges: []wantCharge{
	{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
	{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
	{Item: "base", Plan: "team@1", Amount: "50", From: "2026-02-01", Event: "e3"},
	{Item: "calls", Plan: "team@1", From: "2026-02-01", Event: "e3"},
	{Item: "support", Plan: "team@1", Amount: "15", From: "2026-02-01", Event: "e3"},
}}}

func scenarios() []scenario {
	return []scenario{
		{
			name: "a_upgrade_cancel_in_order", history: "upgrade-cancel", build: upgradeThenCancel,
			deliver: func(c *crm) []message { return inOrder(c.events) },
			events:  upgradeThenCancelEvents, subs: upgradeThenCancelWant,
		},
		{
			name: "b_upgrade_cancel_shuffled", history: "upgrade-cancel", build: upgradeThenCancel,
			deliver: func(c *crm) []message {
				// The first seed whose permutation is not the identity.
				for seed := uint64(1); ; seed++ {
					msgs := shuffled(rand.New(rand.NewPCG(seed, 7)), c.events)
					if msgs[0][0].ID != "e1" {
						return msgs
					}
				}
			},
			events: upgradeThenCancelEvents, subs: upgradeThenCancelWant,
		},
		{
			name: "c_upgrade_cancel_every_event_duplicated", history: "upgrade-cancel", build: upgradeThenCancel,
			deliver: func(c *crm) []message {
				// e3 twice before its predecessor e2 arrives, e2 twice in
				// one message before e1 arrives, then every event again.
				return []message{c.pick("e3"), c.pick("e3"), c.pick("e2", "e2"), c.pick("e1"), c.pick("e1"), c.pick("e3"), c.pick("e2")}
			},
			events: upgradeThenCancelEvents, subs: upgradeThenCancelWant,
			extra: func(t *testing.T, w *world, c *crm) {
				for id, n := range map[string]int64{"e1": 1, "e2": 2, "e3": 2} {
					if r := w.event(id); r.Duplicates != n {
						t.Errorf("event %s: %d duplicates, want %d", id, r.Duplicates, n)
					}
				}
			},
		},
		{
			name: "c2_upgrade_cancel_random_duplicates_batched", history: "upgrade-cancel", build: upgradeThenCancel,
			deliver: func(c *crm) []message {
				rng := rand.New(rand.NewPCG(3, 3))
				return batched(rng, withDuplicates(rng, shuffled(rng, c.events), 6), 3)
			},
			events: upgradeThenCancelEvents, subs: upgradeThenCancelWant,
		},
		{
			name: "d_late_change_overrides_from_its_time_on", history: "late-change", build: lateChange,
			events: map[string]wantEvent{"e1": applied(1), "e2": applied(2), "e3": applied(3)},
			subs:   lateChangeWant,
			extra: func(t *testing.T, w *world, c *crm) {
				w.deliver(inOrder(c.pick("e1", "e2")))
				before := w.clock.Now()
				w.deliver(inOrder(c.pick("e3")))
				// As known before e3: pro from Mar 1.
				old, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: "s1", AsOf: &before})
				if err != nil {
					t.Fatal(err)
				}
				assertCharges(t, "s1 as of before e3", old, []wantCharge{
					{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-03-01", Event: "e1"},
					{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-03-01", Event: "e1"},
					{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-03-01", Event: "e2"},
					{Item: "calls", Plan: "pro@1", From: "2026-03-01", Event: "e2"},
				})
				mar := ts("2026-03-15")
				now, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: "s1", At: &mar})
				if err != nil {
					t.Fatal(err)
				}
				if len(now) != 3 || now[0].Plan.Key != "team" {
					t.Errorf("in force on Mar 15: %v, want the 3 items of team", chargeIDLines(now))
				}
			},
		},
		{
			// A consumer ordering by effective time would apply e3 before e2
			// and end on pro; versions say e3 is the newer word.
			name: "d2_late_change_delivered_by_effective_time", history: "late-change", build: lateChange,
			deliver: func(c *crm) []message { return byEffectiveTime(c.events) },
			events:  map[string]wantEvent{"e1": applied(1), "e2": applied(2), "e3": applied(3)},
			subs:    lateChangeWant,
		},
		{
			// A late change back to the start's plan: the timeline is basic
			// throughout again, and the record that says so has the id it had
			// after e1 (recorded again after being superseded).
			name: "d3_late_change_back_rerecords_the_same_id", history: "late-change-back",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").
					Start("e1", ts("2026-01-01"), "basic").
					Upgrade("e2", ts("2026-03-01"), "pro").
					LateChange("e3", ts("2026-02-01"), "basic")
				return c
			},
			events: map[string]wantEvent{"e1": applied(1), "e2": applied(2), "e3": applied(3)},
			subs: map[string]wantSub{"s1": {version: 3, last: "e3", charges: []wantCharge{
				{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", Event: "e1"},
				{Item: "calls", Plan: "basic@1", From: "2026-01-01", Event: "e1"},
			}}},
			extra: func(t *testing.T, w *world, c *crm) {
				w.deliver(inOrder(c.pick("e1")))
				first := chargeIDLines(w.charges("s1"))
				w.deliver(inOrder(c.pick("e2")))
				afterE2 := w.clock.Now()
				w.deliver(inOrder(c.pick("e3")))
				if got := chargeIDLines(w.charges("s1")); !slices.Equal(got, first) {
					t.Errorf("after the late change back: %v, want the records after e1: %v", got, first)
				}
				old, err := w.store.ListCharges(w.ctx, abacus.ChargeFilter{TenantID: w.tenant, SubscriptionID: "s1", AsOf: &afterE2})
				if err != nil {
					t.Fatal(err)
				}
				if len(old) != 4 {
					t.Errorf("as of after e2: %d records, want 4 (basic and pro, 2 items each):\n%s", len(old), strings.Join(chargeIDLines(old), "\n"))
				}
			},
		},
		{
			name: "e_discount_on_one_item_applied_then_removed", history: "discount",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").
					Start("e1", ts("2026-01-01"), "pro").
					Discount("e2", ts("2026-02-01"), abacus.Discount{Key: "launch", Percent: "20", Items: []string{"base"}}).
					RemoveDiscount("e3", ts("2026-04-01"), "launch")
				return c
			},
			deliver: func(c *crm) []message { return inOrder(c.events) },
			events:  map[string]wantEvent{"e1": applied(1), "e2": applied(2), "e3": applied(3)},
			subs: map[string]wantSub{"s1": {version: 3, last: "e3", charges: []wantCharge{
				{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
				{Item: "base", Plan: "pro@1", Amount: "30", Discounts: "launch:20%[base]", From: "2026-02-01", To: "2026-04-01", Event: "e2"},
				{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-04-01", Event: "e3"},
				// not split: the discount is limited to base
				{Item: "calls", Plan: "pro@1", From: "2026-01-01", Event: "e1"},
			}}},
		},
		{
			// A discount on every item with an end (until): both items split
			// at its start and at its end.
			name: "e2_discount_until", history: "discount-until",
			build: func() *crm {
				c := newCRM("acme")
				until := ts("2026-02-01")
				c.sub("c1", "s1").
					Start("e1", ts("2026-01-01"), "basic").
					Discount("e2", ts("2026-01-10T09:30:00Z"), abacus.Discount{Key: "welcome", Percent: "50", Until: &until})
				return c
			},
			deliver: func(c *crm) []message { return reversed(c.events) },
			events:  map[string]wantEvent{"e1": applied(1), "e2": applied(2)},
			subs: map[string]wantSub{"s1": {version: 2, last: "e2", charges: []wantCharge{
				{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-01-10T09:30:00Z", Event: "e1"},
				{Item: "base", Plan: "basic@1", Amount: "10", Discounts: "welcome:50%<2026-02-01T00:00:00Z", From: "2026-01-10T09:30:00Z", To: "2026-02-01", Event: "e2"},
				{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-02-01", Event: "e2"},
				{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-01-10T09:30:00Z", Event: "e1"},
				{Item: "calls", Plan: "basic@1", Discounts: "welcome:50%<2026-02-01T00:00:00Z", From: "2026-01-10T09:30:00Z", To: "2026-02-01", Event: "e2"},
				{Item: "calls", Plan: "basic@1", From: "2026-02-01", Event: "e2"},
			}}},
		},
		{
			// Delivered last first: everything waits for e1, then applies in
			// version order; e3 contradicts the history (after the end) and
			// is rejected in its turn; e4 and the customer's second
			// subscription still apply.
			name: "f_change_after_cancel_rejected_later_events_apply", history: "change-after-cancel",
			build: func() *crm {
				c := newCRM("acme")
				s1 := c.sub("c1", "s1")
				s1.Start("e1", ts("2026-01-01"), "basic").
					Cancel("e2", ts("2026-03-01")).
					Upgrade("e3", ts("2026-04-01"), "pro").
					Upgrade("e4", ts("2026-02-01"), "pro")
				c.sub("c1", "s2").Start("e5", ts("2026-03-01"), "team")
				return c
			},
			deliver: func(c *crm) []message { return reversed(c.events) },
			events: map[string]wantEvent{"e1": applied(1), "e2": applied(2),
				"e3": rejected(3, "the subscription ends at 2026-03-01T00:00:00Z (event e2); a change effective at 2026-04-01T00:00:00Z is not before its end"),
				"e4": applied(4), "e5": applied(5)},
			subs: map[string]wantSub{
				"s1": {version: 4, last: "e4", endsAt: "2026-03-01", charges: []wantCharge{
					{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
					{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
					{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-02-01", To: "2026-03-01", Event: "e4"},
					{Item: "calls", Plan: "pro@1", From: "2026-02-01", To: "2026-03-01", Event: "e4"},
				}},
				"s2": {version: 5, last: "e5", charges: []wantCharge{
					{Item: "base", Plan: "team@1", Amount: "50", From: "2026-03-01", Event: "e5"},
					{Item: "calls", Plan: "team@1", From: "2026-03-01", Event: "e5"},
					{Item: "support", Plan: "team@1", Amount: "15", From: "2026-03-01", Event: "e5"},
				}},
			},
			extra: func(t *testing.T, w *world, c *crm) {
				h, err := w.store.SubscriptionHead(w.ctx, w.tenant, "c1")
				if err != nil || h.Version != 5 || h.EventID != "e5" {
					t.Errorf("head %+v %v, want version 5 at e5", h, err)
				}
			},
		},
		{
			// Two events claim version 3 while they wait for version 2: the
			// first received takes it, the other is rejected when it does; a
			// resend of version 2 under another id, after the fact, too.
			name: "g_version_already_taken_rejected", history: "taken",
			build: func() *crm {
				c := newCRM("acme")
				s1 := c.sub("c1", "s1")
				s1.Start("e1", ts("2026-01-01"), "basic").
					Upgrade("e2", ts("2026-02-01"), "pro").
					Change("e2x", ts("2026-02-01"), "team", withVersion(2)).
					Cancel("e3a", ts("2026-03-01")).
					Change("e3b", ts("2026-03-15"), "team", withVersion(3)).
					Change("e4", ts("2026-02-15"), "team")
				return c
			},
			deliver: func(c *crm) []message { return inOrder(c.pick("e1", "e3a", "e3b", "e2", "e2x", "e4")) },
			events: map[string]wantEvent{"e1": applied(1), "e2": applied(2),
				"e3a": applied(3),
				"e3b": rejected(3, "version 3 is taken: customer c1's events are applied up to version 3 (event e3a)"),
				"e2x": rejected(2, "version 2 is taken: customer c1's events are applied up to version 3 (event e3a)"),
				"e4":  applied(4)},
			subs: map[string]wantSub{"s1": {version: 4, last: "e4", endsAt: "2026-03-01", charges: []wantCharge{
				{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
				{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-02-01", Event: "e1"},
				{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-02-01", To: "2026-02-15", Event: "e2"},
				{Item: "calls", Plan: "pro@1", From: "2026-02-01", To: "2026-02-15", Event: "e2"},
				{Item: "base", Plan: "team@1", Amount: "50", From: "2026-02-15", To: "2026-03-01", Event: "e4"},
				{Item: "calls", Plan: "team@1", From: "2026-02-15", To: "2026-03-01", Event: "e4"},
				{Item: "support", Plan: "team@1", Amount: "15", From: "2026-02-15", To: "2026-03-01", Event: "e4"},
			}}},
		},
		{
			// previous_id chains instead of versions, delivered last first:
			// nothing has a version until e1 (version 1) arrives.
			name: "h_previous_id_chain_delivered_in_reverse", history: "chain",
			build: func() *crm {
				c := newCRM("acme")
				c.chained = true
				c.sub("c1", "s1").
					Start("e1", ts("2026-01-01"), "basic").
					Upgrade("e2", ts("2026-01-16"), "pro").
					Discount("e3", ts("2026-02-01"), abacus.Discount{Key: "vip", Percent: "10"}).
					Cancel("e4", ts("2026-03-01"))
				return c
			},
			events: map[string]wantEvent{"e1": applied(1), "e2": applied(2), "e3": applied(3), "e4": applied(4)},
			subs: map[string]wantSub{"s1": {version: 4, last: "e4", endsAt: "2026-03-01", charges: []wantCharge{
				{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", To: "2026-01-16", Event: "e1"},
				{Item: "calls", Plan: "basic@1", From: "2026-01-01", To: "2026-01-16", Event: "e1"},
				{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-01-16", To: "2026-02-01", Event: "e2"},
				{Item: "calls", Plan: "pro@1", From: "2026-01-16", To: "2026-02-01", Event: "e2"},
				{Item: "base", Plan: "pro@1", Amount: "30", Discounts: "vip:10%", From: "2026-02-01", To: "2026-03-01", Event: "e3"},
				{Item: "calls", Plan: "pro@1", Discounts: "vip:10%", From: "2026-02-01", To: "2026-03-01", Event: "e3"},
			}}},
			extra: func(t *testing.T, w *world, c *crm) {
				for _, e := range c.events[1:] {
					if e.Version != 0 || e.PreviousID == "" {
						t.Fatalf("event %s has version %d previous %q: the history is not chained", e.ID, e.Version, e.PreviousID)
					}
				}
				w.deliver(inOrder(c.pick("e4", "e3", "e2")))
				w.assertEvents(map[string]wantEvent{"e2": held(0), "e3": held(0), "e4": held(0)})
				if cs := w.charges("s1"); len(cs) != 0 {
					t.Errorf("charges before the start arrived: %v", chargeIDLines(cs))
				}
				w.deliver(inOrder(c.pick("e1")))
			},
		},
		{
			// A 14-day trial in New York across the DST change of Mar 8: the
			// trial ends 14 calendar days later at local midnight (04:00Z
			// under EDT, not 05:00Z).
			name: "i_trial_then_paid", history: "trial",
			build: func() *crm {
				c := newCRM("acme").timeZone("c1", "America/New_York")
				c.sub("c1", "s1").Start("e1", ts("2026-03-01T05:00:00Z"), "starter")
				return c
			},
			deliver: func(c *crm) []message { return inOrder(c.events) },
			events:  map[string]wantEvent{"e1": applied(1)},
			subs: map[string]wantSub{"s1": {version: 1, last: "e1", charges: []wantCharge{
				{Item: "base", Plan: "starter@1", Amount: "20", Trial: true, From: "2026-03-01T05:00:00Z", To: "2026-03-15T04:00:00Z", Event: "e1"},
				{Item: "base", Plan: "starter@1", Amount: "20", From: "2026-03-15T04:00:00Z", Event: "e1"},
				{Item: "calls", Plan: "starter@1", Trial: true, From: "2026-03-01T05:00:00Z", To: "2026-03-15T04:00:00Z", Event: "e1"},
				{Item: "calls", Plan: "starter@1", From: "2026-03-15T04:00:00Z", Event: "e1"},
			}}},
			extra: func(t *testing.T, w *world, c *crm) {
				s := w.subscription("s1")
				if s.TrialEndsAt == nil || !s.TrialEndsAt.Equal(ts("2026-03-15T04:00:00Z")) {
					t.Errorf("trial ends %v, want 2026-03-15T04:00:00Z", s.TrialEndsAt)
				}
				for at, want := range map[string]string{"2026-03-01T04:59:59Z": "pending", "2026-03-10T00:00:00Z": "trialing", "2026-03-15T04:00:00Z": "active"} {
					if got := s.StatusAt(ts(at)); got != want {
						t.Errorf("status at %s: %s, want %s", at, got, want)
					}
				}
				// Calendar anchor: periods start on the 1st, New York time.
				if want := ts("2026-03-01T05:00:00Z"); !s.AnchorAt.Equal(want) {
					t.Errorf("anchor %s, want %s", stamp(s.AnchorAt), stamp(want))
				}
			},
		},
		{
			// The trial's last day is the day clocks go forward in New York
			// (2026-03-08, 02:00 EST → 03:00 EDT): starting at 02:36:30 EST
			// on Feb 22, 14 days later the local clock skips 02:36:30, so
			// the trial ends at the end of the skipped hour, 03:00 EDT
			// (07:00Z), not an hour early (01:36:30 EST, which time.Date
			// gives).
			name: "i3_trial_ending_in_a_dst_gap", history: "trial-dst-gap",
			build: func() *crm {
				c := newCRM("acme").timeZone("c1", "America/New_York")
				c.sub("c1", "s1").Start("e1", ts("2026-02-22T07:36:30Z"), "starter")
				return c
			},
			deliver: func(c *crm) []message { return inOrder(c.events) },
			events:  map[string]wantEvent{"e1": applied(1)},
			subs: map[string]wantSub{"s1": {version: 1, last: "e1", charges: []wantCharge{
				{Item: "base", Plan: "starter@1", Amount: "20", Trial: true, From: "2026-02-22T07:36:30Z", To: "2026-03-08T07:00:00Z", Event: "e1"},
				{Item: "base", Plan: "starter@1", Amount: "20", From: "2026-03-08T07:00:00Z", Event: "e1"},
				{Item: "calls", Plan: "starter@1", Trial: true, From: "2026-02-22T07:36:30Z", To: "2026-03-08T07:00:00Z", Event: "e1"},
				{Item: "calls", Plan: "starter@1", From: "2026-03-08T07:00:00Z", Event: "e1"},
			}}},
		},
		{
			// An upgrade during the trial keeps the trial: pro is free until
			// the trial's end, then paid. The paid record starts at the end
			// of the trial, a term of the start event, so e1 started it.
			name: "i2_upgrade_during_trial", history: "trial-upgrade",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").Start("e1", ts("2026-01-01"), "starter").Upgrade("e2", ts("2026-01-10"), "pro")
				return c
			},
			deliver: func(c *crm) []message { return reversed(c.events) },
			events:  map[string]wantEvent{"e1": applied(1), "e2": applied(2)},
			subs: map[string]wantSub{"s1": {version: 2, last: "e2", charges: []wantCharge{
				{Item: "base", Plan: "starter@1", Amount: "20", Trial: true, From: "2026-01-01", To: "2026-01-10", Event: "e1"},
				{Item: "base", Plan: "pro@1", Amount: "30", Trial: true, From: "2026-01-10", To: "2026-01-15", Event: "e2"},
				{Item: "base", Plan: "pro@1", Amount: "30", From: "2026-01-15", Event: "e1"},
				{Item: "calls", Plan: "starter@1", Trial: true, From: "2026-01-01", To: "2026-01-10", Event: "e1"},
				{Item: "calls", Plan: "pro@1", Trial: true, From: "2026-01-10", To: "2026-01-15", Event: "e2"},
				{Item: "calls", Plan: "pro@1", From: "2026-01-15", Event: "e1"},
			}}},
		},
		{
			// Canceled effective at its start: it never runs, so no charge;
			// anything after is after its end.
			name: "j_cancel_at_start_no_charges", history: "cancel-at-start",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").
					Start("e1", ts("2026-01-01"), "basic").
					Cancel("e2", ts("2026-01-01")).
					Upgrade("e3", ts("2026-01-01"), "pro").
					Discount("e4", ts("2026-01-05"), abacus.Discount{Key: "x", Amount: "1"})
				return c
			},
			deliver: func(c *crm) []message { return inOrder(c.events) },
			events: map[string]wantEvent{"e1": applied(1), "e2": applied(2),
				"e3": rejected(3, "the subscription ends at 2026-01-01T00:00:00Z (event e2); a change effective at 2026-01-01T00:00:00Z is not before its end"),
				"e4": rejected(4, "a discount effective at 2026-01-05T00:00:00Z is not before its end")},
			subs: map[string]wantSub{"s1": {version: 2, last: "e2", endsAt: "2026-01-01", charges: nil}},
			extra: func(t *testing.T, w *world, c *crm) {
				s := w.subscription("s1")
				if len(s.Phases) != 0 || s.StatusAt(ts("2026-01-01")) != "canceled" {
					t.Errorf("phases %v status %s, want none and canceled", s.Phases, s.StatusAt(ts("2026-01-01")))
				}
			},
		},
	}
}

// TestScenarios runs every scenario on SQLite and on PostgreSQL: the
// invariants after every message and at the end, the exact charge records,
// statuses, versions, and the same charge ids on both stores, for every
// delivery of one history, and from an in-memory derivation.
func TestScenarios(t *testing.T) {
	var mu sync.Mutex
	idsByHistory := map[string][]string{}
	firstOf := map[string]string{}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			for _, sk := range allStores {
				t.Run(sk.name, func(t *testing.T) {
					c := sc.build()
					w := newWorld(t, sk.open(t), c)
					var tt timeTravel
					w.afterEach = func() {
						w.checkInvariants(t, false)
						tt.record(w)
					}
					if sc.deliver != nil {
						w.deliver(sc.deliver(c))
					}
					if sc.extra != nil {
						sc.extra(t, w, c)
					}
					w.checkInvariants(t, true)
					tt.check(t, w)
					w.assertEvents(sc.events)
					if n := len(w.events()); n != len(c.events) {
						t.Errorf("%d event records, the CRM sent %d", n, len(c.events))
					}
					var all []string
					for _, id := range sortedKeys(sc.subs) {
						want := sc.subs[id]
						s := w.subscription(id)
						if s.Version != want.version || s.LastEventID != want.last {
							t.Errorf("subscription %s: version %d (%s), want %d (%s)", id, s.Version, s.LastEventID, want.version, want.last)
						}
						switch {
						case want.endsAt == "" && s.EndsAt != nil:
							t.Errorf("subscription %s ends at %s, want open", id, stamp(*s.EndsAt))
						case want.endsAt != "" && (s.EndsAt == nil || !s.EndsAt.Equal(ts(want.endsAt))):
							t.Errorf("subscription %s ends at %v, want %s", id, s.EndsAt, want.endsAt)
						}
						got := w.charges(id)
						assertCharges(t, id, got, want.charges)
						// The ids do not depend on the store: a derivation of
						// the applied events with the in-memory catalog gives
						// the same records.
						_, derived, err := subscription.Derive(appliedEvents(w, id), planSource(catalogPlans(t)))
						if err != nil {
							t.Fatal(err)
						}
						if g, x := chargeIDLines(got), chargeIDLines(sortCharges(derived)); !slices.Equal(g, x) {
							t.Errorf("subscription %s: stored ids differ from an in-memory derivation:\n  %s\nwant\n  %s", id, strings.Join(g, "\n  "), strings.Join(x, "\n  "))
						}
						all = append(all, chargeIDLines(got)...)
					}
					mu.Lock()
					defer mu.Unlock()
					key := sc.history
					if prev, ok := idsByHistory[key]; !ok {
						idsByHistory[key], firstOf[key] = all, sc.name+"/"+sk.name
					} else if !slices.Equal(prev, all) {
						t.Errorf("history %s: charge records differ from those of %s:\n  %s\nwant\n  %s", key, firstOf[key],
							strings.Join(all, "\n  "), strings.Join(prev, "\n  "))
					}
				})
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// appliedEvents returns the stored applied events of a subscription in
// version order.
func appliedEvents(w *world, sub string) []*abacus.SubscriptionEvent {
	w.tb.Helper()
	rs, err := w.store.ListSubscriptionEvents(w.ctx, abacus.SubscriptionEventFilter{TenantID: w.tenant, SubscriptionID: sub, Status: abacus.SubEventApplied})
	if err != nil {
		w.tb.Fatal(err)
	}
	out := make([]*abacus.SubscriptionEvent, len(rs))
	for i, r := range rs {
		e := r.SubscriptionEvent
		out[i] = &e
	}
	return out
}

// TestScenarioDeliveryOrdersOfOneHistory delivers one richer history (two
// customers, three subscriptions, late changes, discounts, a cancel) in
// many orders, with duplicates, batches and previous_id chains, on both
// stores: every run ends exactly as the in-order run.
func TestScenarioDeliveryOrdersOfOneHistory(t *testing.T) {
	build := func() *crm {
		c := newCRM("acme").timeZone("c2", "Europe/Berlin")
		c.sub("c1", "s1").Start("a1", ts("2026-01-01"), "basic").Upgrade("a2", ts("2026-01-20T15:00:00Z"), "pro")
		c.sub("c1", "s2").Start("a3", ts("2026-01-05"), "starter", withAnchor(abacus.AnchorAnniversary))
		c.sub("c1", "s1").Discount("a4", ts("2026-01-10"), abacus.Discount{Key: "d1", Amount: "2.50", Items: []string{"calls"}}).
			LateChange("a5", ts("2026-01-15"), "team").Cancel("a6", ts("2026-03-01"))
		c.sub("c2", "s3").Start("b1", ts("2026-02-03T08:00:00Z"), "pro").
			Discount("b2", ts("2026-02-10"), abacus.Discount{Key: "d2", Percent: "15"}).
			Downgrade("b3", ts("2026-03-01"), "basic").
			RemoveDiscount("b4", ts("2026-02-20"), "d2")
		return c
	}
	for _, sk := range allStores {
		t.Run(sk.name, func(t *testing.T) {
			c := build()
			ref := newWorld(t, sk.open(t), c)
			ref.deliver(inOrder(c.events))
			ref.checkInvariants(t, true)
			want := ref.outcome()
			for _, st := range want.Events {
				if !strings.HasPrefix(st, "applied") {
					t.Fatalf("the in-order run did not apply everything: %v", want.Events)
				}
			}
			runs := 12
			if sk.name == "postgres" {
				runs = 6
			}
			for i := range runs {
				rng := rand.New(rand.NewPCG(uint64(i), 99))
				events := chainCopy(c.events, func(int) bool { return rng.IntN(3) == 0 })
				msgs := batched(rng, withDuplicates(rng, shuffled(rng, events), rng.IntN(6)), 1+rng.IntN(3))
				if i == 0 {
					msgs = reversed(events)
				}
				w := newWorld(t, sk.open(t), c)
				var tt timeTravel
				w.afterEach = func() { tt.record(w) }
				w.deliver(msgs)
				w.checkInvariants(t, false)
				tt.check(t, w)
				if d := diffOutcomes(want, w.outcome()); d != "" {
					t.Errorf("run %d differs from the in-order run:\n%s", i, d)
				}
			}
		})
	}
}

// TestScenarioSubscriptionOfAnotherCustomer: an event must only change a
// subscription of its own customer. Events are ordered per customer, so an
// event of c2 naming c1's subscription would change it outside c1's order
// (and which of c1's events it lands between would depend on delivery).
func TestScenarioSubscriptionOfAnotherCustomer(t *testing.T) {
	for _, sk := range allStores {
		t.Run(sk.name, func(t *testing.T) {
			c := newCRM("acme")
			c.sub("c1", "s1").Start("e1", ts("2026-01-01"), "basic")
			c.sub("c2", "s1").Upgrade("x1", ts("2026-02-01"), "pro") // c2's version 1, on c1's s1
			w := newWorld(t, sk.open(t), c)
			w.deliver(inOrder(c.events))
			r := w.event("x1")
			if r.Status != abacus.SubEventRejected {
				s := w.subscription("s1")
				t.Fatalf("event x1 of customer c2 was %s on subscription s1 of customer c1 (s1 is now on %v, customer %s, version %d): "+
					"Derive/inTurn never check that an event's customer owns the subscription", r.Status, s.Phases[len(s.Phases)-1].Plan, s.CustomerID, s.Version)
			}
			if want := "subscription s1 belongs to customer c1, not c2"; !strings.Contains(r.Reason, want) {
				t.Errorf("x1 rejected with %q, want a reason containing %q", r.Reason, want)
			}
			w.checkInvariants(t, true)
			if cs := w.charges("s1"); len(cs) != 2 || cs[0].Plan.Key != "basic" {
				t.Errorf("s1 changed: %v", chargeIDLines(cs))
			}
		})
	}
}

// TestScenarioForkedPreviousID: two events claim the same place in a
// customer's order, at least one of them by previous_id. Only one can take
// it; the outcome (which one, and what happens to the other and to what
// builds on it) must not depend on the order in which they arrive. Each
// case delivers the same events in two orders and compares.
func TestScenarioForkedPreviousID(t *testing.T) {
	cases := []struct {
		name          string
		build         func() *crm
		first, second []string // two delivery orders (ids)
	}{
		{
			// e2 and e2b both name e1. Arriving after e2 applied, e2b is
			// rejected as taken; arriving before e1, it must not wait forever.
			name: "two_previous_ids",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").Start("e1", ts("2026-01-01"), "basic").
					Upgrade("e2", ts("2026-02-01"), "pro", withPrevious("e1")).
					Change("e2b", ts("2026-02-01"), "team", withPrevious("e1"))
				return c
			},
			first: []string{"e1", "e2", "e2b"}, second: []string{"e2", "e2b", "e1"},
		},
		{
			// e2 claims version 2, e2b names e1: the same place.
			name: "version_and_previous_id",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").Start("e1", ts("2026-01-01"), "basic").
					Upgrade("e2", ts("2026-02-01"), "pro").
					Change("e2b", ts("2026-02-01"), "team", withPrevious("e1"))
				return c
			},
			first: []string{"e1", "e2", "e2b"}, second: []string{"e2", "e2b", "e1"},
		},
		{
			// e3 builds on e2b, which loses version 2 to e2.
			name: "chain_on_the_losing_branch",
			build: func() *crm {
				c := newCRM("acme")
				c.sub("c1", "s1").Start("e1", ts("2026-01-01"), "basic").
					Upgrade("e2", ts("2026-02-01"), "pro").
					Change("e2b", ts("2026-02-01"), "team", withVersion(2)).
					Cancel("e3", ts("2026-03-01"), withPrevious("e2b"))
				return c
			},
			first: []string{"e1", "e2", "e2b", "e3"}, second: []string{"e2", "e2b", "e3", "e1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, sk := range allStores {
				t.Run(sk.name, func(t *testing.T) {
					c := tc.build()
					a := newWorld(t, sk.open(t), c)
					a.deliver(inOrder(c.pick(tc.first...)))
					b := newWorld(t, sk.open(t), c)
					b.deliver(inOrder(c.pick(tc.second...)))
					var stuck []string
					for _, r := range b.events() {
						if r.Status == abacus.SubEventHeld {
							stuck = append(stuck, r.ID)
						}
					}
					d := diffOutcomes(a.outcome(), b.outcome())
					if len(stuck) > 0 || d != "" {
						why := "the outcome depends on the delivery order (consumer.go, receive and its held-chain cascade)"
						if len(stuck) > 0 {
							why = fmt.Sprintf("events %v stay held forever although everything arrived", stuck)
						}
						t.Fatalf("delivered %v instead of %v: %s; differences:\n%s", tc.second, tc.first, why, d)
					}
					a.checkInvariants(t, true)
					b.checkInvariants(t, true)
				})
			}
		})
	}
}

// TestScenarioHeldStatusesMidway checks the held statuses of a half-delivered
// history: what waits for a missing version is held, with no effect.
func TestScenarioHeldStatusesMidway(t *testing.T) {
	for _, sk := range allStores {
		t.Run(sk.name, func(t *testing.T) {
			c := upgradeThenCancel()
			c.sub("c1", "s1").Discount("e4", ts("2026-01-20"), abacus.Discount{Key: "k", Percent: "5"})
			w := newWorld(t, sk.open(t), c)
			w.deliver(inOrder(c.pick("e1", "e3", "e4")))
			w.checkInvariants(t, true)
			w.assertEvents(map[string]wantEvent{"e1": applied(1), "e3": held(3), "e4": held(4)})
			assertCharges(t, "s1", w.charges("s1"), []wantCharge{
				{Item: "base", Plan: "basic@1", Amount: "10", From: "2026-01-01", Event: "e1"},
				{Item: "calls", Plan: "basic@1", From: "2026-01-01", Event: "e1"},
			})
			held, err := w.store.ListSubscriptionEvents(w.ctx, abacus.SubscriptionEventFilter{TenantID: w.tenant, Status: abacus.SubEventHeld})
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(len(held), " ", held[0].ID, " ", held[1].ID); got != "2 e3 e4" {
				t.Errorf("held: %s", got)
			}
			// The gap check reports the missing version 2 once the bound has
			// passed (CheckGaps needs no log), and applying it resolves that.
			later := c.event("e4").ReceivedAt.Add(subscription.DefaultGapAlertAfter + time.Minute)
			cons := subscription.NewConsumer(subscription.ConsumerConfig{Store: w.store, Clock: abacus.ClockFunc(func() time.Time { return later })})
			if err := cons.CheckGaps(w.ctx); err != nil {
				t.Fatal(err)
			}
			alerts, err := w.store.ListAlerts(w.ctx, w.tenant, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(alerts) != 1 || alerts[0].ID != subscription.GapAlertID("c1", 2) {
				t.Fatalf("open alerts %+v, want one for c1's version 2", alerts)
			}
			w.deliver(inOrder(c.pick("e2")))
			w.assertEvents(map[string]wantEvent{"e2": applied(2), "e3": applied(3), "e4": applied(4)})
			if open, err := w.store.ListAlerts(w.ctx, w.tenant, true); err != nil || len(open) != 0 {
				t.Errorf("open alerts after the gap filled: %+v %v", open, err)
			}
		})
	}
}

// TestScenarioLocksOfAnotherSchema: SubscriptionTx.Lock serialises the
// transactions of one store. Two PostgreSQL stores in different schemas of
// one database (as every test store is, and as deployments sharing a
// database would be) are different stores: a lock taken in one must not
// block the other. pg_advisory_xact_lock is database-wide, so the key must
// name the schema (as CreatePlan's lock does).
func TestScenarioLocksOfAnotherSchema(t *testing.T) {
	a, b := postgresKind.open(t), postgresKind.open(t)
	ctx := context.Background()
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.ApplySubscriptions(ctx, func(tx abacus.SubscriptionTx) error {
			if err := tx.Lock(ctx, "cus:acme:c1"); err != nil {
				return err
			}
			close(holding)
			<-release
			return nil
		})
	}()
	select {
	case <-holding:
	case err := <-done:
		t.Fatalf("store a: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := b.ApplySubscriptions(tctx, func(tx abacus.SubscriptionTx) error { return tx.Lock(tctx, "cus:acme:c1") })
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("store a: %v", err)
	}
	if err != nil {
		t.Fatalf("store b (another schema) waited for a lock held by store a and gave up after 2s (%v): "+
			"postgres/subscriptions.go subscriptionTx.Lock calls pg_advisory_xact_lock(hashtextextended(key, 0)) without "+
			"current_schema() in the key; with the consumer's keys (sev:/cus:/sub: + tenant + id) stores in two schemas "+
			"serialise on each other and can deadlock (SQLSTATE 40P01)", err)
	}
}
