package connector

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/syncbuf"
)

// publishLog is a pollLog that also counts the pages that published something, so a
// test can wait until events flow.
type publishLog struct {
	*pollLog
	mu        sync.Mutex
	published int
}

func newPublishLog() *publishLog {
	return &publishLog{pollLog: &pollLog{last: map[string]string{}, since: map[string]time.Time{}}}
}

func (l *publishLog) page(replica string) func(*pollers.Job, pollers.PageResult) {
	rec := l.pollLog.page(replica)
	return func(j *pollers.Job, p pollers.PageResult) {
		rec(j, p)
		if p.Published == 0 {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		l.published++
	}
}

func (l *publishLog) pages() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.published
}

// warnings returns a logger of the warnings and errors, which the test prints if it fails.
func warnings(t *testing.T) *slog.Logger {
	t.Helper()
	b := &syncbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("connector warnings:\n%s", b.String())
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// runLogged is runReplica with a publishLog and a logger.
func runLogged(t *testing.T, cfg config.Config, name string, log *publishLog, logger *slog.Logger) *instance {
	t.Helper()
	cfg.Lease.Replica = name
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{cancel: cancel, done: make(chan error, 1), running: make(chan Running, 1)}
	go func() {
		in.done <- Run(ctx, Options{Config: cfg, Log: logger.With("replica", name), Version: "test",
			OnPage: log.page(name), Started: func(r Running) { in.running <- r }})
	}()
	t.Cleanup(func() { cancel(); <-in.done })
	select {
	case r := <-in.running:
		in.jobs = r.Jobs
	case err := <-in.done:
		t.Fatalf("replica %s: %v", name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not start", name)
	}
	return in
}

// clusterConfig is scaleConfig with the stream and every bucket R3.
func clusterConfig(t *testing.T, sb *sandbox.Servers, c *natstest.Cluster) config.Config {
	t.Helper()
	cfg := DemoConfig(sb, c.URLs)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.INGRID.Contracts = []string{sandbox.INGRIDDemoContract}
	cfg.Stream.Replicas = 3
	// The shortest TTL docs/scaling.md advises on a real cluster: a leader election
	// stalls KV writes for a moment, and a renewal more than about TTL/5 late makes
	// Acquire refuse a poll of a group still held, which then waits a whole cadence.
	cfg.Lease.TTL = 5 * time.Second
	cfg.INGRID.PerMinute, cfg.NET2GRID.PerMinute = 0, 0
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Buckets just created R3 may not answer until their Raft groups have leaders;
	// the logins are repeatable, so retry them once every stream is current.
	var err error
	for range 3 {
		if err = demoLogins(context.Background(), cfg, sb, scaleUsers, slog.New(slog.DiscardHandler), io.Discard); err == nil {
			return cfg
		}
		c.WaitStreamsCurrent()
	}
	t.Fatal(err)
	return cfg
}

// TestClusterR3LosesAndDuplicatesNothing runs two connectors against a 3-node NATS
// cluster with the stream and every bucket R3, stops a follower node and later the
// stream leader while events flow, and finds in the stream every event of a
// single-server reference run, each exactly once.
func TestClusterR3LosesAndDuplicatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node NATS cluster and two connectors")
	}
	begin := time.Now()
	sb := frozenSandbox(t)
	logger := warnings(t)

	// Reference: one replica on one server, same frozen upstream data.
	ref := natstest.Run(t)
	rcfg := scaleConfig(t, sb, ref.URL)
	// One replica: the TTL only decides how late a renewal may be before Acquire
	// refuses a poll (and the job waits a whole cadence), so make lateness harmless.
	rcfg.Lease.TTL = 15 * time.Second
	rlog := newPublishLog()
	r := runLogged(t, rcfg, "reference", rlog, logger)
	t.Cleanup(func() {
		if t.Failed() {
			rlog.pollLog.mu.Lock()
			defer rlog.pollLog.mu.Unlock()
			t.Logf("reference polled %d of %d jobs: %v", len(rlog.last), r.jobs, rlog.last)
		}
	})
	waitUntil(t, 60*time.Second, "reference polls every job", func() bool {
		rlog.pollLog.mu.Lock()
		defer rlog.pollLog.mu.Unlock()
		return len(rlog.last) == r.jobs && time.Since(rlog.pollLog.at) > time.Second
	})
	stop(t, r)
	want := streamIDs(t, ref.JS, rcfg.Stream.Name)
	t.Logf("reference: %d events in %d pages, %s", len(want), rlog.pages(), time.Since(begin))

	c := natstest.RunCluster(t, 3)
	cfg := clusterConfig(t, sb, c)
	log := newPublishLog()
	a := runLogged(t, cfg, "replica-a", log, logger)
	b := runLogged(t, cfg, "replica-b", log, logger)
	// The test's own view of the cluster, for leaders and the final read.
	js := c.Connect()
	// Steady state first: both lease managers run (they heartbeat their membership
	// only once their bucket watch is up) and events flow; start-up is not what this
	// test is about.
	waitUntil(t, 30*time.Second, "both lease managers run and events flow", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, cfg.KV.Leases)
		if err != nil {
			return false
		}
		for _, r := range []string{"replica-a", "replica-b"} {
			if _, err := kv.Get(ctx, "member."+r); err != nil {
				return false
			}
		}
		return log.pages() > 0
	})
	stream := cfg.Stream.Name
	// loseNode stops node i, waits until more pages publish without it, and restarts it.
	loseNode := func(i int, role string) {
		t.Helper()
		c.Stop(i)
		stopped, before := time.Now(), log.pages()
		waitUntil(t, 30*time.Second, "pages publish without "+role, func() bool { return log.pages() > before })
		t.Logf("%s %s stopped at page %d; page %d published %s later", role, c.Nodes[i].Name, before, log.pages(), time.Since(stopped).Round(time.Millisecond))
		c.Restart(i)
	}
	leader := waitLeader(t, c, stream)
	follower := (leader + 1) % 3
	if follower == c.MetaLeader() {
		follower = (leader + 2) % 3
	}
	loseNode(follower, "follower")
	loseNode(waitLeader(t, c, stream), "stream leader")

	// Every event lands once the polls that failed during the losses are retried.
	waitUntil(t, 45*time.Second, "all reference events stored", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs >= uint64(len(want))
	})
	t.Logf("all %d events stored after %s, %d pages", len(want), time.Since(begin).Round(time.Millisecond), log.pages())
	stop(t, a)
	stop(t, b)
	t.Logf("replicas stopped %s", time.Since(begin).Round(time.Millisecond))
	got := streamIDs(t, js, stream)
	for id, n := range got {
		if n != 1 {
			t.Fatalf("event %s stored %d times", id, n)
		}
	}
	missing := 0
	for id := range want {
		if got[id] == 0 {
			missing++
		}
	}
	if missing > 0 || len(got) == 0 {
		t.Fatalf("%d of the reference run's %d events are not in the R3 stream (%d stored)", missing, len(want), len(got))
	}
	// The stream and every bucket really are R3.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{stream, "KV_" + cfg.KV.Cursors, "KV_" + cfg.KV.Seen, "KV_" + cfg.KV.Leases, "KV_" + cfg.KV.Quota, "KV_" + cfg.KV.Tokens, "KV_" + cfg.NET2GRID.UsersBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas, want 3", name, r)
		}
	}
	t.Logf("%d events, each once, none missing; %s in all", len(got), time.Since(begin).Round(time.Millisecond))
}

// stop stops a connector and waits until it has finished its polls.
func stop(t *testing.T, in *instance) {
	t.Helper()
	in.cancel()
	err := <-in.done
	in.done <- nil // for the cleanup
	if err != nil {
		t.Fatal(err)
	}
}

// waitLeader is the index of the node that leads stream's Raft group.
func waitLeader(t *testing.T, c *natstest.Cluster, stream string) int {
	t.Helper()
	leader := -1
	waitUntil(t, natstest.ClusterReadyTimeout, stream+" has a leader", func() bool {
		leader = c.StreamLeader(stream)
		return leader >= 0
	})
	return leader
}
