package quota

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

func openTestBucket(t *testing.T) (*natstest.Server, jetstream.KeyValue) {
	t.Helper()
	s := natstest.Run(t)
	kv, err := OpenBucket(t.Context(), s.JS, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	return s, kv
}

func newSharedLimiter(t *testing.T, kv jetstream.KeyValue, clock Clock, g *grants, ws ...Window) *Limiter {
	t.Helper()
	l, err := New(Options{Upstream: "grex", Windows: ws, Clock: clock, Logger: discard, KV: kv, KVTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.onGrant = g.add
	return l
}

// TestSharedBudgetNeverExceededAcrossReplicas runs two limiters (two replicas) on one
// bucket under concurrent load and checks the union of their grants.
func TestSharedBudgetNeverExceededAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	_, kv := openTestBucket(t)
	ws := []Window{{Limit: 5, Per: 200 * time.Millisecond}, {Limit: 12, Per: time.Second}}
	g := &grants{}
	a := newSharedLimiter(t, kv, RealClock{}, g, ws...)
	b := newSharedLimiter(t, kv, RealClock{}, g, ws...)
	const perReplica, workers = 15, 4
	var wg sync.WaitGroup
	for _, l := range []*Limiter{a, b} {
		for range workers {
			wg.Go(func() {
				for range perReplica / workers {
					if err := l.Wait(ctx); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Go(func() {
			for range perReplica % workers {
				if err := l.Wait(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := g.list()
	if len(got) != 2*perReplica {
		t.Fatalf("%d grants, want %d", len(got), 2*perReplica)
	}
	checkWindows(t, got, ws)
	e, err := kv.Get(ctx, "grex")
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatalf("stored record %s: %v", e.Value(), err)
	}
	if len(rec.TS) == 0 || len(rec.TS) > 2*perReplica {
		t.Fatalf("stored record holds %d grants", len(rec.TS))
	}
}

func TestSharedPauseHoldsOtherReplicas(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	_, kv := openTestBucket(t)
	clock := NewFakeClock(t0)
	g := &grants{}
	a := newSharedLimiter(t, kv, clock, g, Window{Limit: 100, Per: time.Minute})
	b := newSharedLimiter(t, kv, clock, g, Window{Limit: 100, Per: time.Minute})
	a.Pause(t0.Add(time.Minute))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := clock.BlockUntil(ctx, 1); err != nil { // a parked: the pause is in the bucket
		t.Fatal(err)
	}
	wg.Go(func() {
		if err := b.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	if err := clock.BlockUntil(ctx, 2); err != nil { // b parked too, on the shared pause
		t.Fatal(err)
	}
	if n := g.len(); n != 0 {
		t.Fatalf("%d grants during the pause", n)
	}
	clock.Advance(time.Minute)
	wg.Wait()
	for _, ts := range g.list() {
		if ts.Before(t0.Add(time.Minute)) {
			t.Fatalf("grant at %v, before the pause ended", ts)
		}
	}
}

func TestFallsBackToReplicaShareWhenKVUnreachable(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	s, kv := openTestBucket(t)
	clock := NewFakeClock(t0)
	g := &grants{}
	l := newSharedLimiter(t, kv, clock, g, Window{Limit: 4, Per: time.Minute}) // 2 replicas: share 2
	if err := l.Wait(ctx); err != nil {                                        // through the bucket
		t.Fatal(err)
	}
	s.Shutdown()
	if err := l.Wait(ctx); err != nil { // bucket gone: the share still has room for 1
		t.Fatal(err)
	}
	third, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Wait(third) }()
	if err := clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("third request granted beyond the per-replica share")
	}
	if n := g.len(); n != 2 {
		t.Fatalf("%d grants, want 2", n)
	}
}
