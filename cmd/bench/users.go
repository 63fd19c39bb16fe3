package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
)

// benchTokenKey encrypts the bench's token store (a throw-away key, not a secret).
const benchTokenKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// serveChild runs in a child process: the NET2GRID sandbox with n demo users and a
// JetStream server (FILE storage in a temp dir). It prints "<nats url> <api url>" and
// serves until its stdin closes. Keeping them out of the measuring process makes its CPU
// and RSS those of one connector replica.
func serveChild(n int) error {
	dir, err := os.MkdirTemp("", "gridstream-bench-child-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	srv, err := publish.StartEmbedded(dir)
	if err != nil {
		return err
	}
	defer srv.Shutdown()
	fake := sandbox.NewNET2GRID(sandbox.NET2GRIDOptions{Seed: 1, DemoUsers: n})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	fmt.Printf("%s http://%s\n", srv.ClientURL(), ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// startChild starts serveChild and returns the NATS and API URLs and a stop function.
func startChild(users int, log io.Writer) (natsURL, apiURL string, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", "", nil, err
	}
	cmd := exec.Command(exe, "-upstream-child", "-users", strconv.Itoa(users))
	cmd.Stderr = log
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", "", nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", "", nil, err
	}
	stop = func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill() // the child we started, by its pid
			<-done
		}
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	natsURL, apiURL, ok := strings.Cut(strings.TrimSpace(line), " ")
	if err != nil || !ok {
		stop()
		return "", "", nil, fmt.Errorf("upstream child: %q: %v", line, err)
	}
	return natsURL, apiURL, stop, nil
}

// usersFigure bootstraps users NET2GRID users (password login → encrypted refresh token
// in the KV token store, installations in the registry), brings every job to the steady
// state of a replica that has been running (seen-store holding the look-back window,
// cursor one cadence behind), then runs one full cycle of polls through the scheduler
// and reports this process's CPU seconds and memory for it.
func usersFigure(ctx context.Context, out figures, log io.Writer, users int) error {
	natsURL, apiURL, stop, err := startChild(users, log)
	if err != nil {
		return err
	}
	defer stop()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := publish.NewJetStream(nc, MaxPending)
	if err != nil {
		return err
	}
	if _, err := publish.EnsureStream(ctx, js, publish.StreamConfig{Name: "ENERGY", Prefix: "energy", Duplicates: 2 * time.Minute, Storage: "file"}); err != nil {
		return err
	}
	ckv, err := publish.OpenKV(ctx, js, "gridstream_cursors", "bench cursors", publish.KVConfig{})
	if err != nil {
		return err
	}
	skv, err := publish.OpenKV(ctx, js, "gridstream_seen", "bench seen-store", publish.KVConfig{})
	if err != nil {
		return err
	}
	reg, err := net2grid.OpenRegistry(ctx, js, "", publish.KVConfig{}, time.Now)
	if err != nil {
		return err
	}
	store, err := auth.NewKVStore(ctx, js, auth.KVConfig{Key: secret.New(benchTokenKey), Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	// One connection pool for every user, logins included, as the connector builds it
	// (Options.defaults on a copy would give each Login its own pool, whose idle
	// connections outlive it).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	defer tr.CloseIdleConnections()
	opts := net2grid.Options{
		Transport: tr,
		APIBase:   apiURL, ClientID: sandbox.NET2GRIDDemoClientID, ClientSecret: secret.New(sandbox.NET2GRIDDemoClientSecret),
		Users: reg, TokenStore: store, Logger: slog.New(slog.DiscardHandler),
	}

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 1; i <= users; i++ {
		g.Go(func() error {
			_, err := net2grid.Login(gctx, opts, sandbox.NET2GRIDDemoUser(i), secret.New(sandbox.NET2GRIDDemoPassword))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	src, err := net2grid.New(opts)
	if err != nil {
		return err
	}
	jobs, err := src.Jobs(ctx)
	if err != nil {
		return err
	}
	if len(jobs) != users {
		return fmt.Errorf("%d jobs for %d users", len(jobs), users)
	}
	out.put("n2g_users", "%d", users)
	out.put("n2g_bootstrap_seconds", "%.1f", time.Since(start).Seconds())
	fmt.Fprintf(log, "users: %d logged in, %d jobs in %v\n", users, len(jobs), time.Since(start).Round(time.Millisecond))

	// Steady state: what the previous cycle (one cadence ago) left behind.
	cursors := pollers.NewKVCursors(ckv)
	seen := publish.NewKVSeen(js, skv)
	start = time.Now()
	var keys sync.Map
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, job := range jobs {
		g.Go(func() error {
			n, err := warm(gctx, job, cursors, seen, time.Now().Add(-job.Dataset.Cadence))
			keys.Store(job.ID(), n)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("steady state: %w", err)
	}
	seenKeys := 0
	keys.Range(func(_, v any) bool { seenKeys += v.(int); return true })
	fmt.Fprintf(log, "users: steady state (%d seen keys) in %v\n", seenKeys, time.Since(start).Round(time.Millisecond))

	// One cycle through the scheduler, as `connector run` polls.
	runner := &pollers.Runner{
		Publisher: publish.NewPublisher(js), Cursors: cursors, Seen: seen,
		Prefix: "energy", Log: slog.New(slog.DiscardHandler),
	}
	var mu sync.Mutex
	var polled, failed, records, published int
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sched := &pollers.Scheduler{Runner: runner, OnPoll: func(_ *pollers.Job, res pollers.PollResult, err error, _ time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		polled++
		records += res.Records
		published += res.Published
		if err != nil {
			failed++
		}
		if polled == len(jobs) {
			cancel()
		}
	}}
	sched.SetJobs(jobs)
	runtime.GC()
	cpu0, wall0 := cpuSeconds(), time.Now()
	if err := sched.Run(cctx); err != nil {
		return err
	}
	cpu, wall := cpuSeconds()-cpu0, time.Since(wall0)
	rss := statusKB("VmRSS")
	runtime.GC() // live heap: what the replica keeps between cycles
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if memProfile != "" {
		if f, err := os.Create(memProfile); err == nil {
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}
	// The replica keeps its jobs, token sources and seen-store cache between cycles.
	runtime.KeepAlive(src)
	runtime.KeepAlive(jobs)
	runtime.KeepAlive(seen)
	if failed > 0 {
		return fmt.Errorf("%d of %d polls failed", failed, polled)
	}
	out.put("n2g_seen_keys", "%d", seenKeys)
	out.put("n2g_cycle_records_checked", "%d", records)
	out.put("n2g_cycle_published", "%d", published)
	out.put("n2g_cycle_wall_seconds", "%.1f", wall.Seconds())
	out.put("n2g_cycle_cpu_seconds", "%.1f", cpu)
	out.put("n2g_cpu_cores_at_15min_cadence", "%.3f", cpu/(15*60))
	out.put("n2g_rss_mib", "%.0f", float64(rss)/1024)
	out.put("n2g_live_heap_mib", "%.0f", float64(ms.HeapAlloc)/(1<<20))
	out.put("n2g_rss_kib_per_user", "%.1f", float64(rss)/float64(users))
	return nil
}

// warm leaves a job as a poll one cadence ago (at mark) would have: the look-back window
// in the seen-store except the readings that arrived since, the cursor at mark.
func warm(ctx context.Context, job *pollers.Job, cursors pollers.CursorStore, seen *publish.KVSeen, mark time.Time) (int, error) {
	ds, id := job.Dataset, job.ID()
	if _, err := seen.Job(ctx, id); err != nil { // a running replica has the job cached
		return 0, err
	}
	path, q := ds.Request(job.Partition, pollers.Window{From: mark.Add(-ds.LookBack), To: time.Now()})
	body, err := job.Fetcher.Get(ctx, path, q)
	if err != nil {
		return 0, err
	}
	recs, err := ds.Decode(body)
	if err != nil {
		return 0, err
	}
	// The newest quarter-hour of readings arrived after that poll: leave it out, so the
	// cycle publishes what a steady-state cycle publishes.
	var newest time.Time
	for _, r := range recs {
		if r.Time.After(newest) {
			newest = r.Time
		}
	}
	entries := make([]publish.SeenEntry, 0, len(recs))
	for _, r := range recs {
		if r.Time.After(newest.Add(-ds.Cadence)) {
			continue
		}
		entries = append(entries, publish.SeenEntry{KeyHash: publish.KeyHash(r.Key), ContentHash: publish.ContentHash(r.Body)})
	}
	if err := seen.Commit(ctx, id, entries); err != nil {
		return 0, err
	}
	return len(entries), cursors.Save(ctx, id, pollers.Cursor{Mark: mark})
}

// cpuSeconds is this process's user + system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// statusKB reads a "<field>: N kB" line of /proc/self/status.
func statusKB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// memProfile, if set, receives a heap profile taken after the users cycle.
var memProfile string

// freeMemory returns the memory of earlier figures to the OS before the users figure.
func freeMemory() { debug.FreeOSMemory() }
