package pollers

import (
	"container/heap"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Scheduler polls every job at its dataset's cadence, with jitter so that jobs of one
// dataset do not hit an upstream in lock-step, on a bounded number of workers.
type Scheduler struct {
	Runner *Runner
	// Workers bounds concurrent polls (default 8). Quotas, not workers, bound requests.
	Workers int
	// Jitter is the fraction of the cadence added or removed at random (default 0.1).
	Jitter float64
	Log    *slog.Logger
	// OnPoll, if set, is told about every poll (metrics, status board).
	OnPoll func(job *Job, res PollResult, err error, took time.Duration)
	// Owns, if set, says whether this replica may poll a job now (leases); a job it does
	// not own is skipped and looked at again at its next due time.
	Owns func(jobID string) bool
	// Acquire, if set, is used instead of Owns: it is asked right before a poll and, when
	// this replica may poll the job, returns the context to poll with (it ends if the
	// lease is lost) and done, which the scheduler calls once the poll has finished, so
	// that a lease is never handed to another replica in the middle of a poll.
	Acquire func(ctx context.Context, jobID string) (pollCtx context.Context, done func(), ok bool)
	// Holds, if set, says whether a job that Acquire or Owns refused is still this
	// replica's (its lease is only late in renewing): it is then asked again after
	// HeldRetry, not after its cadence, which for a daily dataset would be hours.
	Holds func(jobID string) bool

	mu      sync.Mutex
	due     dueHeap
	byID    map[string]*entry
	wake    chan struct{}
	running sync.WaitGroup
}

// HeldRetry is how soon a job refused while its lease is held is asked again.
const HeldRetry = time.Second

type entry struct {
	job      *Job
	next     time.Time
	failures int
	index    int  // in the heap; -1 when not queued
	busy     bool // being polled
	removed  bool
	soon     bool // PollSoon while busy: due again right after this poll
}

// SetJobs replaces the job set: new jobs are due at once (spread over a second), jobs
// that are gone stop after their current poll.
func (s *Scheduler) SetJobs(jobs []*Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	keep := make(map[string]bool, len(jobs))
	now := time.Now()
	for _, j := range jobs {
		id := j.ID()
		keep[id] = true
		if e, ok := s.byID[id]; ok {
			e.job = j
			continue
		}
		e := &entry{job: j, next: now.Add(time.Duration(rand.Int64N(int64(time.Second)))), index: -1}
		s.byID[id] = e
		heap.Push(&s.due, e)
	}
	for id, e := range s.byID {
		if !keep[id] {
			e.removed = true
			if e.index >= 0 {
				heap.Remove(&s.due, e.index)
			}
			delete(s.byID, id)
		}
	}
	s.signal()
}

// PollSoon makes the given jobs due now (spread over soonSpread), e.g. because this
// replica just gained their lease and should not wait for their full cadence. Unknown
// ids are ignored.
func (s *Scheduler) PollSoon(jobIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	now := time.Now()
	for _, id := range jobIDs {
		e, ok := s.byID[id]
		if !ok {
			continue
		}
		if e.busy || e.index < 0 {
			e.soon = true
			continue
		}
		at := now.Add(time.Duration(rand.Int64N(int64(soonSpread))))
		if at.Before(e.next) {
			e.next = at
			heap.Fix(&s.due, e.index)
		}
	}
	s.signal()
}

// soonSpread spreads the jobs made due by PollSoon, so that a gained group of jobs does
// not hit an upstream in one burst.
const soonSpread = 200 * time.Millisecond

func (s *Scheduler) init() {
	if s.byID == nil {
		s.byID = map[string]*entry{}
		s.wake = make(chan struct{}, 1)
	}
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run polls until ctx is cancelled, then waits for the polls in flight (which finish
// their publishes and save their cursors) and returns.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	workers := s.Workers
	if workers <= 0 {
		workers = 8
	}
	sem := make(chan struct{}, workers)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		var e *entry
		wait := time.Hour
		if len(s.due) > 0 {
			if d := time.Until(s.due[0].next); d <= 0 {
				e = heap.Pop(&s.due).(*entry)
				e.busy = true
			} else {
				wait = d
			}
		}
		s.mu.Unlock()
		if e == nil {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				s.running.Wait()
				return nil
			case <-timer.C:
			case <-s.wake:
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			s.running.Wait()
			return nil
		}
		s.running.Add(1)
		go func() {
			defer s.running.Done()
			defer func() { <-sem }()
			s.poll(ctx, e)
		}()
	}
}

func (s *Scheduler) poll(ctx context.Context, e *entry) {
	id := e.job.ID()
	var res PollResult
	var err error
	start := time.Now()
	pctx, done, owned := ctx, func() {}, true
	switch {
	case ctx.Err() != nil:
		// Shutting down: a poll not yet started is not started (a select between the
		// worker slot and ctx.Done may pick either).
		owned = false
	case s.Acquire != nil:
		pctx, done, owned = s.Acquire(ctx, id)
	case s.Owns != nil:
		owned = s.Owns(id)
	}
	if owned {
		res, err = s.Runner.Poll(pctx, e.job)
		done()
		if s.OnPoll != nil {
			s.OnPoll(e.job, res, err, time.Since(start))
		}
		if err != nil && ctx.Err() == nil && s.Log != nil {
			s.Log.Warn("poll failed", "job", id, "err", err, "failures", e.failures+1)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e.busy = false
	if e.removed || ctx.Err() != nil {
		return
	}
	if err != nil {
		e.failures++
	} else {
		e.failures = 0
	}
	e.next = time.Now().Add(s.delay(e.job, e.failures))
	if !owned && s.Holds != nil && s.Holds(id) {
		e.next = time.Now().Add(HeldRetry)
	}
	if e.soon {
		e.soon = false
		e.next = time.Now()
	}
	heap.Push(&s.due, e)
	s.signal()
}

// delay is the wait before a job's next poll: its cadence with jitter, stretched when the
// upstream's quota runs low, and backed off after failures.
func (s *Scheduler) delay(job *Job, failures int) time.Duration {
	cadence := job.Dataset.Cadence
	if cadence <= 0 {
		cadence = time.Minute
	}
	if job.Pressure != nil {
		// Above 80 % of a quota window, slow down up to 4x instead of hitting the limit.
		if p := job.Pressure(); p > 0.8 {
			cadence = time.Duration(float64(cadence) * (1 + 3*min(1, (p-0.8)/0.2)))
		}
	}
	if failures > 0 {
		// Retry soon after a blip, then back off exponentially up to the cadence (or an
		// hour for fast datasets), so a broken upstream is not hammered.
		cadence = min(10*time.Second<<min(failures-1, 12), max(cadence, time.Hour))
	}
	jitter := s.Jitter
	if jitter == 0 {
		jitter = 0.1
	}
	f := 1 + jitter*(2*rand.Float64()-1)
	return time.Duration(float64(cadence) * f)
}

type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}
