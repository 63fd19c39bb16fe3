package pollers_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
)

func TestSchedulerPollsEveryJobRepeatedlyAndStopsCleanly(t *testing.T) {
	t.Parallel()
	api, env, _, _ := setup(t, 0)
	api.set("a", time.Now().Add(-time.Hour), 1)
	env.Runner.Now = nil // real time for the scheduler
	ds := testDataset(0)
	ds.Cadence = 20 * time.Millisecond
	var jobs []*pollers.Job
	for i := range 5 {
		jobs = append(jobs, &pollers.Job{Dataset: ds, Partition: pollers.Partition{ID: fmt.Sprint("p", i)}, Fetcher: httpFetcher{api.srv.URL}})
	}
	var mu sync.Mutex
	polls := map[string]int{}
	s := &pollers.Scheduler{Runner: env.Runner, Workers: 2, OnPoll: func(j *pollers.Job, _ pollers.PollResult, err error, _ time.Duration) {
		// A poll cut short by the shutdown below reports the cancellation: not a failure.
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("poll %s: %v", j.ID(), err)
		}
		mu.Lock()
		polls[j.ID()]++
		mu.Unlock()
	}}
	s.SetJobs(jobs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		ok := len(polls) == 5
		for _, n := range polls {
			ok = ok && n >= 3
		}
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs not polled 3 times each: %v", polls)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("scheduler did not stop")
	}
	// Each job published its one record exactly once, however often it polled.
	if got := assertNoDuplicateIDs(t, env); len(got) != 5 {
		t.Fatalf("%d ids, want 5", len(got))
	}
}

// hourlyJob is one job with a record to publish, an hour cadence (so a poll soon after
// the first can only come from the scheduler's hooks) and real time.
func hourlyJob(t *testing.T) (*pollertest.Env, *pollers.Job) {
	t.Helper()
	api, env, _, _ := setup(t, 0)
	api.set("a", time.Now().Add(-time.Hour), 1)
	env.Runner.Now = nil
	ds := testDataset(0)
	ds.Cadence = time.Hour
	return env, &pollers.Job{Dataset: ds, Partition: pollers.Partition{ID: "p"}, Fetcher: httpFetcher{api.srv.URL}}
}

func TestSchedulerPollsAGainedJobSoonNotAfterItsCadence(t *testing.T) {
	t.Parallel()
	env, job := hourlyJob(t)
	var mu sync.Mutex
	owned, asked, finished := false, 0, 0
	polled := make(chan struct{}, 1)
	s := &pollers.Scheduler{Runner: env.Runner,
		Acquire: func(ctx context.Context, id string) (context.Context, func(), bool) {
			mu.Lock()
			defer mu.Unlock()
			asked++
			if !owned {
				return ctx, nil, false
			}
			return ctx, func() { mu.Lock(); finished++; mu.Unlock() }, true
		},
		OnPoll: func(*pollers.Job, pollers.PollResult, error, time.Duration) { polled <- struct{}{} },
	}
	s.SetJobs([]*pollers.Job{job})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	// The first due time finds the job not owned: it is skipped, next due in an hour.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := asked
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("scheduler never asked for the lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	owned = true
	mu.Unlock()
	s.PollSoon(job.ID(), "unknown.job.id")
	select {
	case <-polled:
	case <-time.After(5 * time.Second):
		t.Fatal("gained job not polled soon")
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if finished != 1 {
		t.Fatalf("done called %d times, want 1", finished)
	}
}

// TestSchedulerAsksAgainSoonForAJobItsLeaseStillHolds: a lease late in renewing refuses a
// poll for a moment; the job is asked again after HeldRetry, not after its hour cadence.
func TestSchedulerAsksAgainSoonForAJobItsLeaseStillHolds(t *testing.T) {
	t.Parallel()
	env, job := hourlyJob(t)
	var mu sync.Mutex
	refusals := 0
	polled := make(chan struct{}, 1)
	s := &pollers.Scheduler{Runner: env.Runner,
		Acquire: func(ctx context.Context, id string) (context.Context, func(), bool) {
			mu.Lock()
			defer mu.Unlock()
			if refusals == 0 { // the renewal is late this once
				refusals++
				return ctx, nil, false
			}
			return ctx, func() {}, true
		},
		Holds:  func(string) bool { return true },
		OnPoll: func(*pollers.Job, pollers.PollResult, error, time.Duration) { polled <- struct{}{} },
	}
	s.SetJobs([]*pollers.Job{job})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Run(ctx) }()
	select {
	case <-polled:
	case <-time.After(10 * pollers.HeldRetry):
		t.Fatal("a job refused while its lease is held waited for its cadence")
	}
}
