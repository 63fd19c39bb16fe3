package quota

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 8, 5, 12, 0, 0, 0, time.UTC)

// grants collects a Limiter's grant times.
type grants struct {
	mu sync.Mutex
	ts []time.Time
}

func (g *grants) add(t time.Time) {
	g.mu.Lock()
	g.ts = append(g.ts, t)
	g.mu.Unlock()
}

func (g *grants) list() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Clone(g.ts)
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

func (g *grants) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.ts)
}

func newTestLimiter(t *testing.T, clock Clock, ws ...Window) (*Limiter, *grants) {
	t.Helper()
	l, err := New(Options{Upstream: "test", Windows: ws, Clock: clock, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	g := &grants{}
	l.onGrant = g.add
	return l, g
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkWindows fails if any interval [t, t+Per) holds more than Limit grants.
func checkWindows(t *testing.T, ts []time.Time, ws []Window) {
	t.Helper()
	for _, w := range ws {
		for i := range ts {
			n := 0
			for j := i; j < len(ts) && ts[j].UnixNano()-ts[i].UnixNano() < int64(w.Per); j++ {
				n++
			}
			if n > w.Limit {
				t.Fatalf("window %d/%s exceeded: %d grants from %s", w.Limit, w.Per, n, ts[i].Format(time.RFC3339Nano))
			}
		}
	}
}

var discard = slog.New(slog.DiscardHandler)

// drive advances the fake clock to each timer the code under test parks on, until done.
func drive(t *testing.T, clock *FakeClock, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			t.Fatal("timed out driving the fake clock")
		}
		if !clock.AdvanceToNext() {
			time.Sleep(time.Millisecond) // polling a condition, not waiting for time to pass
		}
	}
}

// parked waits until the limiter has n waiters in its queue.
func parked(t *testing.T, l *Limiter, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		got := len(l.queue)
		l.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // polling a condition, not waiting for time to pass
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"no windows":     {Upstream: "grex"},
		"zero limit":     {Upstream: "grex", Windows: []Window{{0, time.Minute}}},
		"zero period":    {Upstream: "grex", Windows: []Window{{1, 0}}},
		"bad name":       {Upstream: "gr.ex", Windows: []Window{{1, time.Minute}}},
		"negative slack": {Upstream: "grex", Windows: []Window{{1, time.Minute}}, Margin: -1},
	} {
		if _, err := New(o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: err = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestWindowBoundaryIsExact(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	clock := NewFakeClock(t0)
	l, g := newTestLimiter(t, clock, Window{Limit: 2, Per: time.Minute})
	for range 2 {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx) }()
	if err := clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("third request granted 1ns before the window ended (err %v)", err)
	default:
	}
	clock.Advance(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []time.Time{t0, t0, t0.Add(time.Minute)}
	if got := g.list(); !slices.Equal(got, want) {
		t.Fatalf("grants %v, want %v", got, want)
	}
}

func TestMarginWidensWindows(t *testing.T) {
	t.Parallel()
	clock := NewFakeClock(t0)
	l, err := New(Options{Upstream: "test", Windows: []Window{{1, time.Minute}}, Clock: clock, Margin: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ok, _, _ := l.reserve(t.Context(), clock.Now())
	if !ok {
		t.Fatal("first request refused")
	}
	clock.Advance(time.Minute)
	if ok, at, _ := l.reserve(t.Context(), clock.Now()); ok || !at.Equal(t0.Add(time.Minute+time.Second)) {
		t.Fatalf("reserve at window end = %v, retry at %v; want refused until +61s", ok, at)
	}
}

// TestBurstsNeverExceedWindowsAndUseTheFullBudget runs many concurrent waiters against
// two windows and checks the grants follow the greedy schedule exactly: never more
// than a window allows, and never later than the budget allows.
func TestBurstsNeverExceedWindowsAndUseTheFullBudget(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	clock := NewFakeClock(t0)
	ws := []Window{{Limit: 3, Per: time.Second}, {Limit: 5, Per: 10 * time.Second}}
	l, g := newTestLimiter(t, clock, ws...)
	const n = 16
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if err := l.Wait(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	drive(t, clock, func() bool { return g.len() == n })
	wg.Wait()
	got := g.list()
	checkWindows(t, got, ws)
	var want []time.Time
	for _, s := range []float64{0, 0, 0, 1, 1, 10, 10, 10, 11, 11, 20, 20, 20, 21, 21, 30} {
		want = append(want, t0.Add(time.Duration(s*float64(time.Second))))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("grants\n%v\nwant greedy schedule\n%v", got, want)
	}
}

func TestWaitersAreServedFIFO(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	clock := NewFakeClock(t0)
	l, _ := newTestLimiter(t, clock, Window{Limit: 1, Per: time.Second})
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 8
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := l.Wait(ctx); err != nil {
				t.Error(err)
			}
			order <- i
		})
		parked(t, l, i+1) // waiter i is queued before i+1 starts
	}
	for i := range n { // one grant per second: advance, then see who got it
		if err := clock.BlockUntil(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.AdvanceToNext()
		if got := <-order; got != i {
			t.Fatalf("grant %d went to waiter %d", i, got)
		}
	}
	wg.Wait()
}

func TestWaitReturnsContextErrorAndPassesTheTurn(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	clock := NewFakeClock(t0)
	l, _ := newTestLimiter(t, clock, Window{Limit: 1, Per: time.Minute})
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	headCtx, cancelHead := context.WithCancel(ctx)
	midCtx, cancelMid := context.WithCancel(ctx)
	head, mid, tail := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go func() { head <- l.Wait(headCtx) }()
	parked(t, l, 1)
	go func() { mid <- l.Wait(midCtx) }()
	parked(t, l, 2)
	go func() { tail <- l.Wait(ctx) }()
	parked(t, l, 3)

	cancelMid() // not at the head: just leaves the queue
	if err := <-mid; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued waiter: err = %v, want context.Canceled", err)
	}
	cancelHead() // at the head, parked on the clock
	if err := <-head; !errors.Is(err, context.Canceled) {
		t.Fatalf("head waiter: err = %v, want context.Canceled", err)
	}
	if err := clock.BlockUntil(ctx, 1); err != nil { // tail took the turn
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	if err := <-tail; err != nil {
		t.Fatal(err)
	}
	if u := l.Usage()[0]; u.Used != 1 {
		t.Fatalf("used = %d after one grant in the new window", u.Used)
	}
}

func TestPauseHoldsEveryWaiter(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	clock := NewFakeClock(t0)
	l, g := newTestLimiter(t, clock, Window{Limit: 100, Per: time.Minute})
	l.Pause(t0.Add(30 * time.Second))
	l.Pause(t0.Add(10 * time.Second)) // an earlier end does not shorten the pause
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := l.Wait(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	if err := clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if p := l.Pressure(); p != 1 {
		t.Fatalf("pressure while paused = %v, want 1", p)
	}
	clock.Advance(30*time.Second - time.Nanosecond)
	if n := g.len(); n != 0 {
		t.Fatalf("%d requests granted during the pause", n)
	}
	clock.Advance(time.Nanosecond)
	wg.Wait()
	for _, ts := range g.list() {
		if !ts.Equal(t0.Add(30 * time.Second)) {
			t.Fatalf("grant at %v, want at the pause end", ts)
		}
	}
}

func TestUsageAndPressure(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	clock := NewFakeClock(t0)
	l, _ := newTestLimiter(t, clock, Window{Limit: 4, Per: time.Minute}, Window{Limit: 10, Per: time.Hour})
	if p := l.Pressure(); p != 0 {
		t.Fatalf("idle pressure = %v", p)
	}
	for range 3 {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	want := []WindowUsage{{4, time.Minute, 3, 1}, {10, time.Hour, 3, 7}}
	if got := l.Usage(); !slices.Equal(got, want) {
		t.Fatalf("usage %v, want %v", got, want)
	}
	if p := l.Pressure(); p != 0.75 {
		t.Fatalf("pressure = %v, want 0.75", p)
	}
	clock.Advance(time.Minute)
	want = []WindowUsage{{4, time.Minute, 0, 4}, {10, time.Hour, 3, 7}}
	if got := l.Usage(); !slices.Equal(got, want) {
		t.Fatalf("usage a minute later %v, want %v", got, want)
	}
	if p := l.Pressure(); p != 0.3 {
		t.Fatalf("pressure = %v, want 0.3", p)
	}
}
