package connector

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/nats-io/nats.go/jetstream"
)

const scaleUsers = 12

// pollLog records which replica polled which job when (from OnPage: every poll has a page).
type pollLog struct {
	mu    sync.Mutex
	last  map[string]string    // job -> replica of its latest poll
	since map[string]time.Time // job -> time of its latest poll
	at    time.Time            // latest page of anyone
}

func (l *pollLog) page(replica string) func(*pollers.Job, pollers.PageResult) {
	return func(j *pollers.Job, _ pollers.PageResult) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.last[j.ID()], l.since[j.ID()], l.at = replica, time.Now(), time.Now()
	}
}

type instance struct {
	cancel  context.CancelFunc
	done    chan error
	running chan Running
	jobs    int
}

func runReplica(t *testing.T, cfg config.Config, name string, log *pollLog) *instance {
	t.Helper()
	cfg.Lease.Replica = name
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan error, 1), running: make(chan Running, 1)}
	go func() {
		in.done <- Run(ctx, Options{Config: cfg, Log: slog.New(slog.DiscardHandler), Version: "test",
			OnPage: log.page(name), Started: func(r Running) { in.running <- r }})
	}()
	t.Cleanup(func() { cancel(); <-in.done })
	select {
	case r := <-in.running:
		if r.Jobs == 0 {
			t.Fatal("no jobs")
		}
		in.jobs = r.Jobs
	case err := <-in.done:
		t.Fatalf("replica %s: %v", name, err)
	case <-time.After(20 * time.Second):
		t.Fatalf("replica %s did not start", name)
	}
	return in
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// frozenSandbox serves fixed data (the clock does not move), so that a later reference
// run sees exactly what the replicas saw.
func frozenSandbox(t *testing.T) *sandbox.Servers {
	t.Helper()
	clock := sandbox.NewFakeClock(time.Now().Add(-time.Minute).Truncate(time.Minute))
	sb, err := sandbox.Start(sandbox.ServersOptions{
		INGRID:   sandbox.INGRIDOptions{Clock: clock, Contracts: []string{sandbox.INGRIDDemoContract}},
		NET2GRID: sandbox.NET2GRIDOptions{Clock: clock, DemoUsers: scaleUsers},
		GREX:     sandbox.GREXOptions{Clock: clock},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	return sb
}

func scaleConfig(t *testing.T, sb *sandbox.Servers, natsURL string) config.Config {
	t.Helper()
	cfg := DemoConfig(sb, natsURL)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.INGRID.Contracts = []string{sandbox.INGRIDDemoContract}
	cfg.Lease.TTL = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := demoLogins(context.Background(), cfg, sb, scaleUsers, slog.New(slog.DiscardHandler), io.Discard); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// streamIDs counts every ce-id in the stream.
func streamIDs(t *testing.T, js jetstream.JetStream, stream string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for n := uint64(0); n < info.State.Msgs; {
		batch, err := c.FetchNoWait(1000)
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			ids[m.Headers().Get("ce-id")]++
			n++
		}
		if ctx.Err() != nil {
			t.Fatal("reading the stream timed out")
		}
	}
	return ids
}

// TestThreeReplicasSplitJobsFailOverAndLoseOrDuplicateNothing runs three connectors on
// one NATS and the sandbox: the jobs spread, a stopped replica's jobs resume elsewhere
// within the lease TTL, and the stream holds every entity exactly once.
func TestThreeReplicasSplitJobsFailOverAndLoseOrDuplicateNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("three connectors")
	}
	sb := frozenSandbox(t)
	srv := natstest.Run(t)
	cfg := scaleConfig(t, sb, srv.URL)
	log := &pollLog{last: map[string]string{}, since: map[string]time.Time{}}

	names := []string{"replica-a", "replica-b", "replica-c"}
	var ins []*instance
	for _, n := range names {
		ins = append(ins, runReplica(t, cfg, n, log))
	}
	// Wait until every job was polled and the owners settled (no poll for 2 TTL).
	waitUntil(t, 90*time.Second, "jobs settle", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		return len(log.last) == ins[0].jobs && time.Since(log.at) > 2*cfg.Lease.TTL
	})
	log.mu.Lock()
	per := map[string]int{}
	n2g := 0
	for id, r := range log.last {
		if strings.HasPrefix(id, "net2grid.") {
			per[r]++
			n2g++
		}
	}
	owner := map[string]string{}
	for id, r := range log.last {
		owner[id] = r
	}
	log.mu.Unlock()
	t.Logf("%d jobs; NET2GRID jobs per replica: %v", len(owner), per)
	if n2g != scaleUsers {
		t.Fatalf("%d NET2GRID jobs polled, want %d", n2g, scaleUsers)
	}
	for _, n := range names {
		if per[n] < n2g/6 || per[n] > n2g*2/3 {
			t.Fatalf("uneven spread %v of %d jobs", per, n2g)
		}
	}

	// Stop replica-b: its jobs resume on the others within the TTL.
	var orphans []string
	for id, r := range owner {
		if r == "replica-b" {
			orphans = append(orphans, id)
		}
	}
	stopped := time.Now()
	ins[1].cancel()
	if err := <-ins[1].done; err != nil {
		t.Fatal(err)
	}
	ins[1].done <- nil
	took := waitUntil(t, cfg.Lease.TTL+10*time.Second, "orphans polled elsewhere", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, id := range orphans {
			if log.last[id] == "replica-b" || !log.since[id].After(stopped) {
				return false
			}
		}
		return true
	})
	t.Logf("failover: %d jobs of the stopped replica polled elsewhere %s after the stop (TTL %s)", len(orphans), took, cfg.Lease.TTL)
	if took > cfg.Lease.TTL+2*time.Second {
		t.Fatalf("failover took %s", took)
	}
	for _, in := range ins {
		in.cancel()
	}

	got := streamIDs(t, srv.JS, cfg.Stream.Name)
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	// Reference: one replica on a fresh NATS, same frozen upstream data.
	ref := natstest.Run(t)
	rcfg := scaleConfig(t, sb, ref.URL)
	rlog := &pollLog{last: map[string]string{}, since: map[string]time.Time{}}
	r := runReplica(t, rcfg, "reference", rlog)
	waitUntil(t, 90*time.Second, "reference polls every job", func() bool {
		rlog.mu.Lock()
		defer rlog.mu.Unlock()
		return len(rlog.last) == r.jobs && time.Since(rlog.at) > time.Second
	})
	r.cancel()
	want := streamIDs(t, ref.JS, cfg.Stream.Name)
	missing := 0
	for id := range want {
		if got[id] == 0 {
			missing++
		}
	}
	t.Logf("%d events, %d in the reference, %d missing", len(got), len(want), missing)
	if missing > 0 {
		t.Fatalf("%d events of the reference run are not in the replicated stream", missing)
	}
	if len(got) == 0 {
		t.Fatal("nothing published")
	}
}

// TestSplitBrainStillStoresEachEventOnce makes two replicas poll every job at the same
// time (each believes it holds every lease: separate lease buckets), and checks that the
// msg-id and the seen-store keep every event id exactly once in the stream.
func TestSplitBrainStillStoresEachEventOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("two connectors")
	}
	sb := frozenSandbox(t)
	srv := natstest.Run(t)
	cfg := scaleConfig(t, sb, srv.URL)
	log := &pollLog{last: map[string]string{}, since: map[string]time.Time{}}
	polled := map[string]map[string]bool{}
	var mu sync.Mutex
	var ins []*instance
	for _, name := range []string{"split-a", "split-b"} {
		c := cfg
		c.KV.Leases = "leases_" + strings.ReplaceAll(name, "-", "_")
		rec := log.page(name)
		c.Lease.Replica = name
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{cancel: cancel, done: make(chan error, 1)}
		go func() {
			in.done <- Run(ctx, Options{Config: c, Log: slog.New(slog.DiscardHandler), Version: "test",
				OnPage: func(j *pollers.Job, p pollers.PageResult) {
					rec(j, p)
					mu.Lock()
					if polled[j.ID()] == nil {
						polled[j.ID()] = map[string]bool{}
					}
					polled[j.ID()][name] = true
					mu.Unlock()
				}})
		}()
		t.Cleanup(func() { cancel(); <-in.done })
		ins = append(ins, in)
	}
	waitUntil(t, 90*time.Second, "both replicas poll every job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		both := 0
		for _, by := range polled {
			if len(by) == 2 {
				both++
			}
		}
		log.mu.Lock()
		defer log.mu.Unlock()
		return both > scaleUsers && both == len(polled) && time.Since(log.at) > time.Second
	})
	for _, in := range ins {
		in.cancel()
		if err := <-in.done; err != nil {
			t.Fatal(err)
		}
		in.done <- nil
	}
	got := streamIDs(t, srv.JS, cfg.Stream.Name)
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	t.Logf("%d jobs polled by both replicas, %d events, each once", len(polled), len(got))
}
