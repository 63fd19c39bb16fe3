// Package quota keeps gridstream inside each upstream's fair-use limits (DESIGN.md
// invariant 3): several sliding windows per upstream (G-REX: 100/minute and 500/hour),
// FIFO-fair waiting, Retry-After pauses, and a budget shared by all replicas through a
// JetStream key-value bucket.
package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidOptions is returned by New for a configuration it cannot enforce.
var ErrInvalidOptions = errors.New("quota: invalid options")

// Window is one limit: at most Limit requests in any interval of length Per.
type Window struct {
	Limit int
	Per   time.Duration
}

// WindowUsage is the state of one Window at the moment Usage was called.
type WindowUsage struct {
	Limit     int
	Per       time.Duration
	Used      int // requests granted in the sliding window ending now
	Remaining int // Limit - Used, never negative
}

// Options configure a Limiter. Upstream and Windows are required.
type Options struct {
	// Upstream names the API ("grex"); it is the key in the shared bucket, so it
	// must match [A-Za-z0-9_-]+.
	Upstream string
	// Windows are enforced together: a request waits until it fits all of them.
	Windows []Window
	// Margin widens every window (Per+Margin) to absorb network jitter and clock skew
	// between replicas. Zero enforces the windows exactly as given.
	Margin time.Duration
	// Clock defaults to RealClock.
	Clock Clock
	// Logger receives the fallback and pause notices; nil discards them.
	Logger *slog.Logger

	// KV, when set, shares the budget with every Limiter of the same Upstream on the
	// same bucket (see OpenBucket). Nil keeps the budget in this process.
	KV jetstream.KeyValue
	// ExpectedReplicas is how many replicas may run at once; while KV is unreachable
	// each replica allows itself Limit/ExpectedReplicas (at least 1). Default 2.
	ExpectedReplicas int
	// KVTimeout bounds each KV round trip. Default 2s.
	KVTimeout time.Duration
	// KVRetry is how long the Limiter stays on its per-replica share after a KV
	// failure before it tries the bucket again. Default 10s.
	KVRetry time.Duration
}

// Limiter grants requests to one upstream so that none of its windows is ever
// exceeded, in bursts too. Safe for concurrent use by all jobs of the upstream.
type Limiter struct {
	name      string
	windows   []Window
	fallback  []Window // per-replica share used while KV is unreachable
	margin    time.Duration
	maxPer    time.Duration
	clock     Clock
	log       *slog.Logger
	kv        jetstream.KeyValue
	kvTimeout time.Duration
	kvRetry   time.Duration

	mu            sync.Mutex
	queue         []*waiter // FIFO; only queue[0] may acquire
	own           timeline  // this Limiter's grants (all modes)
	view          timeline  // best known grants of all replicas (Usage, Pressure)
	unsynced      timeline  // grants made while KV was unreachable, not yet written back
	pausedUntil   time.Time
	pausePosted   time.Time // latest pause written to KV
	fallbackUntil time.Time // zero when KV is healthy

	onGrant func(time.Time) // test hook, called with every grant's timestamp
}

type waiter struct{ turn chan struct{} }

var keyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// New returns a Limiter for one upstream.
func New(o Options) (*Limiter, error) {
	if !keyRE.MatchString(o.Upstream) {
		return nil, fmt.Errorf("%w: upstream name %q must match [A-Za-z0-9_-]+", ErrInvalidOptions, o.Upstream)
	}
	if len(o.Windows) == 0 {
		return nil, fmt.Errorf("%w: %s: no window", ErrInvalidOptions, o.Upstream)
	}
	if o.Margin < 0 {
		return nil, fmt.Errorf("%w: %s: negative margin", ErrInvalidOptions, o.Upstream)
	}
	if o.ExpectedReplicas <= 0 {
		o.ExpectedReplicas = 2
	}
	l := &Limiter{
		name:      o.Upstream,
		windows:   append([]Window(nil), o.Windows...),
		margin:    o.Margin,
		clock:     o.Clock,
		log:       o.Logger,
		kv:        o.KV,
		kvTimeout: o.KVTimeout,
		kvRetry:   o.KVRetry,
	}
	for _, w := range o.Windows {
		if w.Limit <= 0 || w.Per <= 0 {
			return nil, fmt.Errorf("%w: %s: window %d/%s must be positive", ErrInvalidOptions, o.Upstream, w.Limit, w.Per)
		}
		l.maxPer = max(l.maxPer, w.Per+o.Margin)
		l.fallback = append(l.fallback, Window{Limit: max(1, w.Limit/o.ExpectedReplicas), Per: w.Per})
	}
	if l.kv == nil {
		l.fallback = l.windows
	}
	if l.clock == nil {
		l.clock = RealClock{}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.kvTimeout <= 0 {
		l.kvTimeout = 2 * time.Second
	}
	if l.kvRetry <= 0 {
		l.kvRetry = 10 * time.Second
	}
	return l, nil
}

// Name returns the upstream this Limiter guards.
func (l *Limiter) Name() string { return l.name }

// Windows returns the configured windows.
func (l *Limiter) Windows() []Window { return append([]Window(nil), l.windows...) }

// Wait blocks until one request fits every window, records it, and returns nil; the
// caller then sends exactly one request. Waiters are served first come, first served,
// and the first in line wakes exactly when the oldest blocking grant leaves its
// window, so queued work uses the whole budget. It returns ctx.Err() if ctx ends first.
func (l *Limiter) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := l.enqueue()
	select {
	case <-w.turn:
	case <-ctx.Done():
		l.dequeue(w)
		return ctx.Err()
	}
	defer l.dequeue(w)
	for {
		now := l.clock.Now()
		if until := l.PausedUntil(); now.Before(until) {
			l.postPause(ctx, until)
			if err := Sleep(ctx, l.clock, until.Sub(now)); err != nil {
				return err
			}
			continue
		}
		ok, at, err := l.reserve(ctx, now)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := Sleep(ctx, l.clock, at.Sub(now)); err != nil {
			return err
		}
	}
}

// Usage returns, per window, how much of the budget is used in the sliding window
// ending now. With a shared budget it reflects the last read of the bucket plus this
// replica's grants since.
func (l *Limiter) Usage() []WindowUsage {
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]WindowUsage, len(l.windows))
	for i, w := range l.windows {
		used := l.view.count(now, w.Per+l.margin)
		out[i] = WindowUsage{Limit: w.Limit, Per: w.Per, Used: used, Remaining: max(0, w.Limit-used)}
	}
	return out
}

// Pressure is the fullest window's used/limit in [0,1], so a scheduler can stretch
// its cadence as the budget runs low. It is 1 while the upstream is paused.
func (l *Limiter) Pressure() float64 {
	if l.clock.Now().Before(l.PausedUntil()) {
		return 1
	}
	p := 0.0
	for _, u := range l.Usage() {
		p = max(p, float64(u.Used)/float64(u.Limit))
	}
	return min(p, 1)
}

// Pause holds every request of this upstream until the given time (a 429 or 503
// Retry-After). An earlier time than a pause already in force changes nothing. With
// a shared budget the next waiter also writes the pause to the bucket, so other
// replicas hold too.
func (l *Limiter) Pause(until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.pausedUntil) {
		l.pausedUntil = until
		l.log.Warn("quota: upstream paused", slog.String("upstream", l.name), slog.Time("until", until))
	}
}

// PausedUntil returns the end of the current pause (zero or past when none).
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}

func (l *Limiter) enqueue() *waiter {
	w := &waiter{turn: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queue = append(l.queue, w)
	if len(l.queue) == 1 {
		close(w.turn)
	}
	return w
}

// dequeue removes w; if w held the turn, the next waiter gets it.
func (l *Limiter) dequeue(w *waiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.queue {
		if x != w {
			continue
		}
		l.queue = append(l.queue[:i], l.queue[i+1:]...)
		if i == 0 && len(l.queue) > 0 {
			close(l.queue[0].turn)
		}
		return
	}
}

// reserve records a grant at now if it fits; otherwise it returns when to try again.
// Only the head of the queue calls it. Errors are ctx errors only: KV failures switch
// to the per-replica share.
func (l *Limiter) reserve(ctx context.Context, now time.Time) (bool, time.Time, error) {
	if l.kv != nil {
		l.mu.Lock()
		healthy := !now.Before(l.fallbackUntil)
		l.mu.Unlock()
		if healthy {
			ok, at, err := l.reserveShared(ctx)
			if err == nil {
				return ok, at, nil
			}
			if ctx.Err() != nil {
				return false, time.Time{}, ctx.Err()
			}
			l.enterFallback(now, err)
		}
	}
	return l.reserveLocal(now)
}

func (l *Limiter) reserveLocal(now time.Time) (bool, time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.own = l.own.prune(now, l.maxPer)
	ok, at := l.own.fit(now, l.fallback, l.margin)
	if !ok {
		return false, at, nil
	}
	l.own = l.own.insert(now)
	if l.kv != nil {
		l.unsynced = l.unsynced.prune(now, l.maxPer).insert(now)
		l.view = l.view.prune(now, l.maxPer).insert(now)
	} else {
		l.view = l.own
	}
	l.granted(now)
	return true, time.Time{}, nil
}

func (l *Limiter) granted(now time.Time) {
	if l.onGrant != nil {
		l.onGrant(now)
	}
}

func (l *Limiter) enterFallback(now time.Time, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fallbackUntil.IsZero() {
		l.log.Warn("quota: shared budget unreachable, using this replica's share",
			slog.String("upstream", l.name), slog.Any("error", err),
			slog.Any("share", l.fallback), slog.Duration("retry_in", l.kvRetry))
	}
	l.fallbackUntil = now.Add(l.kvRetry)
}

// timeline is a sorted list of grant times.
type timeline []time.Time

// inWindow returns the index of the first grant inside the window of length per
// ending at now: a grant at t counts while now-t < per.
func (tl timeline) inWindow(now time.Time, per time.Duration) int {
	from := now.Add(-per)
	return sort.Search(len(tl), func(i int) bool { return tl[i].After(from) })
}

func (tl timeline) count(now time.Time, per time.Duration) int {
	return len(tl) - tl.inWindow(now, per)
}

// fit reports whether one more grant at now keeps every window within its limit;
// if not, at is the earliest time it will.
func (tl timeline) fit(now time.Time, ws []Window, margin time.Duration) (ok bool, at time.Time) {
	ok = true
	for _, w := range ws {
		per := w.Per + margin
		i := tl.inWindow(now, per)
		if n := len(tl) - i; n >= w.Limit {
			ok = false
			// The oldest n-Limit+1 grants in the window must leave it first.
			if t := tl[i+n-w.Limit].Add(per); t.After(at) {
				at = t
			}
		}
	}
	return ok, at
}

// prune drops grants that no window can see any more.
func (tl timeline) prune(now time.Time, maxPer time.Duration) timeline {
	i := tl.inWindow(now, maxPer)
	if i == 0 {
		return tl
	}
	return append(timeline(nil), tl[i:]...)
}

// insert adds t in order (a copy: timelines may be shared snapshots).
func (tl timeline) insert(t time.Time) timeline {
	i := sort.Search(len(tl), func(i int) bool { return tl[i].After(t) })
	out := make(timeline, 0, len(tl)+1)
	out = append(out, tl[:i]...)
	out = append(out, t)
	return append(out, tl[i:]...)
}

// merge returns the sorted union (with repeats) of two timelines.
func (tl timeline) merge(o timeline) timeline {
	out := make(timeline, 0, len(tl)+len(o))
	out = append(out, tl...)
	out = append(out, o...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}
