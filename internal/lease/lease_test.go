package lease_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/lease"
	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const ttl = 1500 * time.Millisecond

func jobIDs(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("net2grid.readings.u-%04d", i))
	}
	return append(out, "ingrid.operational-notices.c1", "ingrid.daily.c1", "grex.certificates.fr1")
}

var grouping = lease.Grouping{Buckets: 32, Whole: []string{"ingrid", "grex"}}

// replica is one Manager on its own NATS connection, so closing it is a crash.
type replica struct {
	name   string
	m      *lease.Manager
	nc     *nats.Conn
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	mu     sync.Mutex
	gained []string
}

func start(t *testing.T, srv *natstest.Server, name string, jobs []string) *replica {
	t.Helper()
	nc, err := nats.Connect(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := publish.OpenKV(context.Background(), js, "gridstream_leases", "test leases", publish.KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, nc: nc, done: make(chan struct{})}
	r.m, err = lease.New(kv, lease.Options{Replica: name, TTL: ttl, Grouping: grouping, Log: slog.New(slog.DiscardHandler),
		OnGain: func(ids ...string) { r.mu.Lock(); r.gained = append(r.gained, ids...); r.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	r.m.SetJobs(jobs)
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.m.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// owners maps each job to the replicas that say they own it.
func owners(rs []*replica, jobs []string) map[string][]string {
	out := map[string][]string{}
	for _, id := range jobs {
		for _, r := range rs {
			if r.m.Owns(id) {
				out[id] = append(out[id], r.name)
			}
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// settled reports every job owned by exactly one of rs.
func settled(rs []*replica, jobs []string) bool {
	o := owners(rs, jobs)
	for _, id := range jobs {
		if len(o[id]) != 1 {
			return false
		}
	}
	return true
}

func count(rs []*replica, jobs []string) map[string]int {
	n := map[string]int{}
	for _, ow := range owners(rs, jobs) {
		for _, r := range ow {
			n[r]++
		}
	}
	return n
}

func TestGroupingKeepsQuotaBoundSourcesWholeAndUsersTogether(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, a, b string }{
		{"ingrid is one group", "ingrid.operational-notices.c1", "ingrid.daily.c2"},
		{"grex is one group", "grex.certificates.fr1", "grex.accounts.fr2"},
		{"one user's datasets together", "net2grid.readings.u-1", "net2grid.other.u-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ga, gb := grouping.Group(tc.a), grouping.Group(tc.b); ga != gb {
				t.Fatalf("%s -> %s, %s -> %s", tc.a, ga, tc.b, gb)
			}
		})
	}
	groups := map[string]bool{}
	for _, id := range jobIDs(500) {
		groups[grouping.Group(id)] = true
	}
	if len(groups) != 32+2 {
		t.Fatalf("%d groups, want 34", len(groups))
	}
}

func TestReplicasSplitJobsEvenlyAndEachJobHasOneOwner(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	jobs := jobIDs(300)
	rs := []*replica{start(t, srv, "a", jobs), start(t, srv, "b", jobs), start(t, srv, "c", jobs)}
	waitFor(t, 4*ttl, "every job owned once", func() bool { return settled(rs, jobs) })
	// Let rebalancing from the staggered starts finish, then check the spread.
	waitFor(t, 4*ttl, "even spread", func() bool {
		n := count(rs, jobs)
		for _, r := range rs {
			if n[r.name] < len(jobs)/6 || n[r.name] > len(jobs)*2/3 {
				return false
			}
		}
		return settled(rs, jobs)
	})
	t.Logf("spread: %v", count(rs, jobs))
}

func TestDeadReplicaJobsMoveWithinTTL(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	jobs := jobIDs(120)
	rs := []*replica{start(t, srv, "a", jobs), start(t, srv, "b", jobs), start(t, srv, "c", jobs)}
	waitFor(t, 4*ttl, "settled", func() bool { return settled(rs, jobs) && count(rs, jobs)["c"] > 0 })
	var orphans []string
	for _, id := range jobs {
		if rs[2].m.Owns(id) {
			orphans = append(orphans, id)
		}
	}
	// Crash c: its connection goes away, it cannot release anything.
	rs[2].nc.Close()
	crashed := time.Now()
	alive := rs[:2]
	took := waitFor(t, 3*ttl, "orphans taken over", func() bool { return settled(alive, jobs) })
	t.Logf("failover of %d jobs took %s (TTL %s)", len(orphans), took, ttl)
	if took > ttl+ttl/2 {
		t.Fatalf("failover took %s, TTL %s", took, ttl)
	}
	// The gaining replicas were told, so their scheduler polls at once.
	for _, id := range orphans {
		told := false
		for _, r := range alive {
			r.mu.Lock()
			for _, g := range r.gained {
				told = told || g == id
			}
			r.mu.Unlock()
		}
		if !told {
			t.Fatalf("gain of %s not reported", id)
		}
	}
	// c's holding window ended before anyone took over: no overlap.
	if rs[2].m.Owns(orphans[0]) {
		t.Fatalf("crashed replica still claims %s %s after the crash", orphans[0], time.Since(crashed))
	}
}

func TestShutdownReleasesAtOnceAndJoinRebalances(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	jobs := jobIDs(90)
	a := start(t, srv, "a", jobs)
	waitFor(t, 2*ttl, "a owns everything", func() bool { return count([]*replica{a}, jobs)["a"] == len(jobs) })
	b := start(t, srv, "b", jobs)
	rs := []*replica{a, b}
	took := waitFor(t, 3*ttl, "b gets its share", func() bool { return settled(rs, jobs) && count(rs, jobs)["b"] >= len(jobs)/4 })
	t.Logf("rebalance on join took %s", took)
	b.cancel()
	<-b.done
	// Released, not expired: a takes everything back well within the TTL.
	took = waitFor(t, ttl, "a owns everything again", func() bool { return count([]*replica{a}, jobs)["a"] == len(jobs) })
	t.Logf("hand-over on shutdown took %s", took)
}

// TestNoJobPolledByTwoReplicasAtOnce runs fake polls through Acquire on three replicas
// while they start, rebalance and stop, and fails on any overlap.
func TestNoJobPolledByTwoReplicasAtOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	jobs := jobIDs(40)
	var mu sync.Mutex
	polling := map[string]string{}
	polls := 0
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	worker := func(r *replica) {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			id := jobs[i%len(jobs)]
			pctx, done, ok := r.m.Acquire(ctx, id)
			if !ok {
				continue
			}
			mu.Lock()
			if other := polling[id]; other != "" {
				t.Errorf("%s polled by %s and %s at once", id, other, r.name)
			}
			polling[id] = r.name
			polls++
			mu.Unlock()
			select {
			case <-time.After(time.Millisecond):
			case <-pctx.Done():
			}
			mu.Lock()
			delete(polling, id)
			mu.Unlock()
			done()
		}
	}
	a := start(t, srv, "a", jobs)
	wg.Add(1)
	go worker(a)
	waitFor(t, 2*ttl, "a owns everything", func() bool { return settled([]*replica{a}, jobs) })
	b := start(t, srv, "b", jobs)
	c := start(t, srv, "c", jobs)
	wg.Add(2)
	go worker(b)
	go worker(c)
	rs := []*replica{a, b, c}
	waitFor(t, 4*ttl, "spread over three", func() bool { return settled(rs, jobs) && count(rs, jobs)["c"] > 0 && count(rs, jobs)["b"] > 0 })
	c.cancel()
	waitFor(t, 2*ttl, "c's jobs back", func() bool { return settled(rs[:2], jobs) })
	cancel()
	wg.Wait()
	if polls == 0 {
		t.Fatal("no polls ran")
	}
}

// TestReplicaClaimsOnceNATSComesBack: a replica whose bucket watch cannot open (NATS is
// away as it starts) keeps trying, reports the watch as lost, and claims its jobs once
// NATS is back, instead of giving up.
func TestReplicaClaimsOnceNATSComesBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := natstest.RunIn(t, dir)
	port := srv.Addr().(*net.TCPAddr).Port
	nc, err := nats.Connect(srv.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	kv, err := publish.OpenKV(context.Background(), js, "gridstream_leases", "test leases", publish.KVConfig{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()

	var mu sync.Mutex
	var watchErrs []error
	m, err := lease.New(kv, lease.Options{Replica: "r1", TTL: ttl, Grouping: grouping, Log: slog.New(slog.DiscardHandler),
		OnWatch: func(err error) { mu.Lock(); watchErrs = append(watchErrs, err); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	jobs := jobIDs(8)
	m.SetJobs(jobs)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// NATS is away: the watch fails (after the client's request timeout) and is reported.
	waitFor(t, 20*time.Second, "lost watch reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(watchErrs) > 0 && watchErrs[0] != nil
	})
	time.Sleep(ttl) // and the replica keeps trying
	select {
	case <-done:
		t.Fatal("Run gave up while NATS was away")
	default:
	}
	natstest.RunAt(t, dir, port)
	waitFor(t, 10*ttl, "jobs owned after NATS came back", func() bool {
		for _, id := range jobs {
			if !m.Owns(id) {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if last := watchErrs[len(watchErrs)-1]; last != nil {
		t.Errorf("watch last reported %v, want it holding", last)
	}
}
