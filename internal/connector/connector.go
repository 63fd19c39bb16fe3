// Package connector assembles a running gridstream from its configuration: NATS (or an
// embedded server), the stream and state buckets, telemetry, the sources and their jobs,
// the scheduler and the HTTP server. cmd/connector only parses flags and calls it; the
// demo and the end-to-end tests run the very same assembly.
package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/lease"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/telemetry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options are what Run needs besides the configuration.
type Options struct {
	Config  config.Config
	Log     *slog.Logger
	Version string
	// OnPage is told about every published page (the demo prints a line per batch).
	OnPage func(job *pollers.Job, page pollers.PageResult)
	// Started, if set, is called once everything runs, with the HTTP address bound.
	Started func(Running)
	// Telemetry, if set, is used instead of a new set-up (tests with span recorders).
	Telemetry *telemetry.Telemetry
}

// Running describes a started connector.
type Running struct {
	HTTPAddr string
	NATSURL  string
	Jobs     int
}

// State is the connection to NATS and the state buckets, shared by `run` and the
// commands that only need the stores (login, users, check).
type State struct {
	Conn     *publish.Conn
	JS       jetstream.JetStream
	Cursors  jetstream.KeyValue
	Seen     jetstream.KeyValue
	Tokens   auth.Store
	Quota    jetstream.KeyValue
	Leases   jetstream.KeyValue
	TokensKV jetstream.KeyValue
}

// Close drains NATS (in-flight publishes finish) and stops an embedded server.
func (s *State) Close() { s.Conn.Close() }

// OpenState connects to NATS and opens every bucket. The token store needs
// GRIDSTREAM_TOKEN_KEY; without it Tokens is nil.
func OpenState(ctx context.Context, cfg config.Config, log *slog.Logger) (*State, error) {
	conn, err := publish.Connect(ctx, publish.ConnConfig{
		URL: cfg.NATS.URL, CredsFile: cfg.NATS.CredsFile, NKeyFile: cfg.NATS.NKeyFile,
		User: cfg.NATS.User, Password: cfg.NATS.Password, Token: cfg.NATS.Token,
		CAFile: cfg.NATS.CAFile, CertFile: cfg.NATS.CertFile, KeyFile: cfg.NATS.KeyFile,
		Name: "gridstream", DataDir: cfg.NATS.DataDir,
	}, log)
	if err != nil {
		return nil, err
	}
	st := &State{Conn: conn}
	fail := func(err error) (*State, error) {
		conn.Close()
		return nil, err
	}
	st.JS, err = publish.NewJetStream(conn.NC, cfg.NATS.MaxPending)
	if err != nil {
		return fail(err)
	}
	kvc := publish.KVConfig{Storage: cfg.Stream.Storage, Replicas: cfg.Stream.Replicas}
	for _, b := range []struct {
		kv          *jetstream.KeyValue
		name, about string
	}{
		{&st.Cursors, cfg.KV.Cursors, "gridstream: job cursors"},
		{&st.Seen, cfg.KV.Seen, "gridstream: seen-store (entity key hash -> content hash)"},
		{&st.Leases, cfg.KV.Leases, "gridstream: job leases"},
	} {
		if *b.kv, err = publish.OpenKV(ctx, st.JS, b.name, b.about, kvc); err != nil {
			return fail(err)
		}
	}
	if st.Quota, err = quotaBucket(ctx, st.JS, cfg); err != nil {
		return fail(err)
	}
	if !cfg.TokenKey.IsZero() {
		st.Tokens, err = auth.NewKVStore(ctx, st.JS, auth.KVConfig{Bucket: cfg.KV.Tokens, Key: cfg.TokenKey, Replicas: cfg.Stream.Replicas})
		if err != nil {
			return fail(fmt.Errorf("token store: %w", err))
		}
	}
	return st, nil
}

// Run runs the connector until ctx is cancelled, then stops fetching, waits for the
// polls in flight to finish their publishes and save their cursors, and returns.
func Run(ctx context.Context, o Options) error {
	cfg, log := o.Config, o.Log
	tel := o.Telemetry
	if tel == nil {
		var err error
		tel, err = telemetry.Setup(ctx, telemetry.Options{ServiceName: "gridstream", Version: o.Version, Logger: log})
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = tel.Shutdown(sctx)
		}()
	}
	board := tel.Board

	// Readiness follows the NATS connection for the life of the process, not only at start.
	var natsReady natsCheck
	// The HTTP server comes first so liveness holds while NATS or an upstream is slow.
	var httpAddr string
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("GRIDSTREAM_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
		}
		httpAddr = ln.Addr().String()
		srv := &http.Server{
			Handler: telemetry.NewHandler(telemetry.HandlerOptions{
				Board: board, Metrics: tel.MetricsHandler(), Version: o.Version, Ready: natsReady.check,
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}
	// Every component is registered not ready up front: /readyz says 200 only once NATS is
	// connected, the stream ensured and the lease bucket read, not between those steps.
	board.SetReady("nats", errors.New("connecting"))
	board.SetReady("stream", errors.New("not created or updated yet"))
	board.SetReady("leases", errors.New("lease bucket not read yet"))
	st, err := OpenState(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	board.SetReady("nats", nil)
	natsReady.conn.Store(st.Conn.NC)
	if _, err := publish.EnsureStream(ctx, st.JS, publish.StreamConfig{
		Name: cfg.Stream.Name, Prefix: cfg.Stream.SubjectPrefix, Duplicates: cfg.Stream.DuplicateWindow,
		MaxAge: cfg.Stream.MaxAge, Storage: cfg.Stream.Storage, Replicas: cfg.Stream.Replicas,
	}); err != nil {
		board.SetReady("stream", err)
		return err
	}
	board.SetReady("stream", nil)

	srcs, err := buildSources(ctx, Deps{Config: cfg, State: st, Tel: tel, Log: log, Version: o.Version})
	if err != nil {
		return err
	}
	jobs, err := collectJobs(ctx, srcs)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		board.AddTokenProvider(tokenStatuses(s))
	}

	runner := &pollers.Runner{
		Publisher: publish.NewPublisher(st.JS),
		Cursors:   pollers.NewKVCursors(st.Cursors),
		Seen:      publish.NewKVSeen(st.JS, st.Seen),
		Prefix:    cfg.Stream.SubjectPrefix,
		Log:       log,
		OnPage: func(job *pollers.Job, p pollers.PageResult) {
			if p.Published > 0 {
				tel.Metrics.PublishLatency(ctx, job.Dataset.Source, job.Dataset.Name, p.PublishTook)
			}
			if o.OnPage != nil {
				o.OnPage(job, p)
			}
		},
	}
	stats := newJobStats()
	sched := &pollers.Scheduler{
		Runner: runner, Workers: cfg.Workers, Log: log,
		OnPoll: func(job *pollers.Job, res pollers.PollResult, err error, took time.Duration) {
			stats.observe(ctx, tel, job, res, err, took)
		},
	}
	sched.SetJobs(jobs)

	// Replicas share the jobs through leases; a single replica simply holds them all.
	replica := cfg.Lease.Replica
	if replica == "" {
		replica = Hostname()
	}
	leases, err := lease.New(st.Leases, lease.Options{
		Replica: replica, TTL: cfg.Lease.TTL, Grouping: JobGrouping, Log: log, OnGain: sched.PollSoon,
		OnWatch: func(err error) { board.SetReady("leases", err) },
	})
	if err != nil {
		return err
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID()
	}
	leases.SetJobs(ids)
	sched.Acquire, sched.Holds = leases.Acquire, leases.Holds
	// The leases outlive the scheduler: they are renewed while the polls in flight
	// finish, and released only after them.
	schedCtx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	leaseCtx, stopLeases := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLeases()
	leasesDone := make(chan struct{})
	go func() {
		leases.Run(leaseCtx) // until stopLeases: it outlasts NATS outages
		close(leasesDone)
	}()

	log.Info("gridstream running", "jobs", len(jobs), "sources", len(srcs), "http", httpAddr, "stream", cfg.Stream.Name, "replica", replica)
	if o.Started != nil {
		o.Started(Running{HTTPAddr: httpAddr, NATSURL: st.Conn.NC.ConnectedUrlRedacted(), Jobs: len(jobs)})
	}
	// The job list follows the sources' configuration and the NET2GRID user registry:
	// users added or removed with `connector users` are picked up without a restart.
	go refreshJobs(schedCtx, srcs, sched, leases, log)
	err = sched.Run(schedCtx)
	stopLeases()
	<-leasesDone
	log.Info("gridstream stopped: polls finished, cursors saved, leases released")
	return err
}

// natsCheck reports the NATS connection's state to /readyz.
type natsCheck struct{ conn atomic.Pointer[nats.Conn] }

func (n *natsCheck) check(context.Context) error {
	nc := n.conn.Load()
	if nc == nil {
		return errors.New("nats: not connected yet")
	}
	if !nc.IsConnected() {
		return fmt.Errorf("nats: %s (reconnecting)", nc.Status())
	}
	return nil
}

// jobsRefresh is how often the job list is rebuilt from the sources.
const jobsRefresh = time.Minute

func collectJobs(ctx context.Context, srcs []source) ([]*pollers.Job, error) {
	var jobs []*pollers.Job
	for _, s := range srcs {
		js, err := s.Jobs(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s jobs: %w", s.name, err)
		}
		for _, j := range js {
			if j.Pressure == nil && s.limiter != nil {
				j.Pressure = s.limiter.Pressure
			}
		}
		jobs = append(jobs, js...)
	}
	return jobs, nil
}

func refreshJobs(ctx context.Context, srcs []source, sched *pollers.Scheduler, leases *lease.Manager, log *slog.Logger) {
	t := time.NewTicker(jobsRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		jobs, err := collectJobs(ctx, srcs)
		if err != nil {
			log.Warn("job list not refreshed; keeping the current one", "err", err)
			continue
		}
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.ID()
		}
		sched.SetJobs(jobs)
		leases.SetJobs(ids)
	}
}

// JobGrouping is how jobs map to leases: the quota-bound INGRID and G-REX are one lease
// each (one active replica, the others stand by), NET2GRID end users hash into 64
// leases split across replicas (all datasets of one user on one replica).
var JobGrouping = lease.Grouping{Buckets: 64, Whole: []string{"ingrid", "grex"}}

// jobStats turns poll results into the status board and metrics.
type jobStats struct {
	mu   sync.Mutex
	byID map[string]*telemetry.JobStatus
	// caughtUp is, per keyset job, the start of its last successful poll (see lag).
	caughtUp map[string]time.Time
}

func newJobStats() *jobStats {
	return &jobStats{byID: map[string]*telemetry.JobStatus{}, caughtUp: map[string]time.Time{}}
}

func (s *jobStats) observe(ctx context.Context, tel *telemetry.Telemetry, job *pollers.Job, res pollers.PollResult, err error, took time.Duration) {
	ds := job.Dataset
	now := time.Now()
	s.mu.Lock()
	st := s.byID[job.ID()]
	if st == nil {
		st = &telemetry.JobStatus{ID: job.ID(), Source: ds.Source, Dataset: ds.Name, Partition: job.Partition.ID}
		s.byID[job.ID()] = st
	}
	st.LastPoll = now
	st.Published += int64(res.Published)
	st.Deduplicated += int64(res.Deduplicated)
	outcome := telemetry.OutcomeOK
	switch {
	case err == nil:
		st.LastSuccess, st.LastError, st.State = now, "", telemetry.JobStateOK
		if res.Published == 0 {
			outcome = telemetry.OutcomeEmpty
		}
	case errors.Is(err, auth.ErrLoginRequired):
		st.LastError, st.State, outcome = err.Error(), telemetry.JobStateBlocked, telemetry.OutcomeAuth
	default:
		st.LastError, st.State, outcome = err.Error(), telemetry.JobStateFailing, telemetry.OutcomeError
		if errors.Is(err, pollers.ErrBadPage) {
			tel.Metrics.PageError(ctx, ds.Source, ds.Name, telemetry.ReasonDecode)
		}
	}
	st.Lag = s.lag(job, res, err, now, took)
	snapshot := *st
	s.mu.Unlock()
	tel.Board.UpdateJob(snapshot)
	tel.Metrics.Poll(ctx, ds.Source, ds.Name, outcome)
	tel.Metrics.Records(ctx, ds.Source, ds.Name, res.Records)
	tel.Metrics.Published(ctx, ds.Source, ds.Name, res.Published)
	tel.Metrics.Deduplicated(ctx, ds.Source, ds.Name, res.Deduplicated)
}

// lag is how far behind the upstream a job is after a poll: the age of the moment up to
// which everything it held is published. A time-window job's cursor is that moment. A
// keyset job's cursor is the time of the newest change read, which for a quiet account
// may be days old although nothing is missing: a keyset poll that succeeded read up to
// the upstream's newest change, so it is caught up as of the poll's start. Called with
// s.mu held.
func (s *jobStats) lag(job *pollers.Job, res pollers.PollResult, err error, now time.Time, took time.Duration) time.Duration {
	id := job.ID()
	if job.Dataset.PageSize > 0 {
		if err == nil {
			s.caughtUp[id] = now.Add(-took)
		}
		if t, ok := s.caughtUp[id]; ok {
			return now.Sub(t)
		}
	}
	if res.Cursor.Mark.IsZero() {
		return 0
	}
	return now.Sub(res.Cursor.Mark)
}

// Hostname is the default replica name.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "gridstream"
	}
	return h
}
