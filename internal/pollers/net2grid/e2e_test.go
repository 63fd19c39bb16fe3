package net2grid

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/syncbuf"
)

// tokenRE matches the fake's access and refresh tokens.
var tokenRE = regexp.MustCompile(`\b(at|rt)\.[0-9a-f]{40}`)

var t0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

const testKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// world is a fake CE-API, a pipeline on a private NATS, a registry and a token store, on one
// fake clock.
type world struct {
	clock *quota.FakeClock
	fake  *sandbox.NET2GRID
	env   *pollertest.Env
	reg   *Registry
	store *auth.KVStore
	opts  Options
	logs  *syncbuf.Buffer
}

func newWorld(t *testing.T, users int) *world {
	t.Helper()
	clock := quota.NewFakeClock(t0)
	fake := sandbox.NewNET2GRID(sandbox.NET2GRIDOptions{Clock: clock, Seed: 42, DemoUsers: users})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	env := pollertest.New(t, pollertest.WithNow(clock.Now))
	ctx := context.Background()
	reg, err := OpenRegistry(ctx, env.JS, "", publish.KVConfig{Storage: "memory"}, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	store, err := auth.NewKVStore(ctx, env.JS, auth.KVConfig{Key: secret.New(testKey), Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	return &world{
		clock: clock, fake: fake, env: env, reg: reg, store: store, logs: logs,
		opts: Options{
			APIBase: srv.URL, ClientID: sandbox.NET2GRIDDemoClientID,
			ClientSecret: secret.New(sandbox.NET2GRIDDemoClientSecret),
			Users:        reg, TokenStore: store, Clock: clock, MaxRetries: 1,
			Sleep:  func(context.Context, time.Duration) error { return nil },
			Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		},
	}
}

func (w *world) login(t *testing.T, n int) {
	t.Helper()
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(16)
	for i := 1; i <= n; i++ {
		g.Go(func() error {
			_, err := Login(ctx, w.opts, sandbox.NET2GRIDDemoUser(i), secret.New(sandbox.NET2GRIDDemoPassword))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func (w *world) source(t *testing.T) *Source {
	t.Helper()
	s, err := New(w.opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jobsOf(t *testing.T, s *Source) map[string]*pollers.Job {
	t.Helper()
	jobs, err := s.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*pollers.Job{}
	for _, j := range jobs {
		m[j.Partition.ID] = j
	}
	return m
}

// withBackfill returns a copy of job that reads only d back, on its first poll and later, so
// tests stay small.
func withBackfill(j *pollers.Job, d time.Duration) *pollers.Job {
	ds := *j.Dataset
	ds.Backfill, ds.LookBack = d, d
	c := *j
	c.Dataset = &ds
	return &c
}

func TestReadingsEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	w.login(t, 3)
	src := w.source(t)
	jobs := jobsOf(t, src)
	if len(jobs) != 3 {
		t.Fatalf("%d jobs, want 3", len(jobs))
	}
	ctx := context.Background()
	want := 0
	for i := 1; i <= 3; i++ {
		email := sandbox.NET2GRIDDemoUser(i)
		job := jobs[UserID(email)]
		if job == nil {
			t.Fatalf("no job for user %d", i)
		}
		res, err := w.env.Poll(ctx, withBackfill(job, 6*time.Hour))
		if err != nil {
			t.Fatalf("user %d: %v", i, err)
		}
		// Every quarter of every metric of every installation delivered in the last 6 hours.
		n := 0
		for _, id := range w.fake.Installations(email) {
			for q := t0.Add(-6 * time.Hour); q.Before(t0); q = q.Add(Quarter) {
				if !w.fake.DeliveredAt(w.fake.BatchFed(email, id), q).After(t0) {
					n += len(w.fake.Metrics(email, id))
				}
			}
		}
		if res.Published != n {
			t.Fatalf("user %d: published %d, want %d", i, res.Published, n)
		}
		want += n
	}
	evs := w.env.Events(t)
	if len(evs) != want {
		t.Fatalf("%d events, want %d", len(evs), want)
	}
	for _, ev := range evs {
		if !strings.HasPrefix(ev.Subject, "energy.net2grid.readings.u-") || ev.Header.Get("ce-type") != "io.gridstream.net2grid.readings" {
			t.Fatalf("event %s %v", ev.Subject, ev.Header)
		}
		for _, s := range []string{ev.Subject, fmt.Sprint(ev.Header), string(ev.Data)} {
			if strings.Contains(s, "@") {
				t.Fatalf("an e-mail address reached an event: %s", s)
			}
		}
	}
	// Nothing changed: the next poll publishes nothing; 15 minutes later, the new quarter.
	job := withBackfill(jobs[UserID(sandbox.NET2GRIDDemoUser(1))], 6*time.Hour)
	if res, err := w.env.Poll(ctx, job); err != nil || res.Published != 0 {
		t.Fatalf("second poll: %+v %v", res, err)
	}
	w.clock.Advance(15 * time.Minute)
	res, err := w.env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	email := sandbox.NET2GRIDDemoUser(1)
	fresh := 0
	for _, id := range w.fake.Installations(email) {
		if !w.fake.BatchFed(email, id) {
			fresh += len(w.fake.Metrics(email, id))
		}
	}
	if res.Published < fresh {
		t.Fatalf("after 15 minutes: published %d, want at least %d", res.Published, fresh)
	}
	if strings.Contains(w.logs.String(), "@") {
		t.Fatal("an e-mail address reached a log line")
	}
}

func TestBatchFedDataIsPublishedWhenItArrives(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 40)
	var email, inst string
	for i := 1; i <= 40 && email == ""; i++ {
		e := sandbox.NET2GRIDDemoUser(i)
		for _, id := range w.fake.Installations(e) {
			if w.fake.BatchFed(e, id) {
				email, inst = e, id
				break
			}
		}
	}
	if email == "" {
		t.Skip("no batch-fed installation among 40 demo users")
	}
	if _, err := Login(context.Background(), w.opts, email, secret.New(sandbox.NET2GRIDDemoPassword)); err != nil {
		t.Fatal(err)
	}
	job := withBackfill(jobsOf(t, w.source(t))[UserID(email)], 12*time.Hour)
	ctx := context.Background()
	if _, err := w.env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	late := t0.Add(-time.Hour) // delivered at 14:00 with the 06:00-12:00 batch
	key := inst + "/electricity-offtake/" + late.Format(time.RFC3339)
	has := func() bool {
		for _, ev := range w.env.Events(t) {
			if ev.Header.Get("ce-subject") == key {
				return true
			}
		}
		return false
	}
	if has() {
		t.Fatal("a batch quarter was published before its delivery")
	}
	// The cursor moved past the late quarter; the look-back re-reads it once delivered.
	for range 8 {
		w.clock.Advance(15 * time.Minute)
		if _, err := w.env.Poll(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	if !has() {
		t.Fatalf("batch quarter %s not published after its delivery", key)
	}
}

func TestRevisionIsPublishedAsUpdate(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 40)
	// Find a high-resolution quarter of the last 12 hours that is revised after t0.
	var email, inst string
	var q, at time.Time
	for i := 1; i <= 40 && q.IsZero(); i++ {
		e := sandbox.NET2GRIDDemoUser(i)
		id := w.fake.Installations(e)[0]
		if w.fake.BatchFed(e, id) {
			continue
		}
		for c := t0.Add(-12 * time.Hour); c.Before(t0) && q.IsZero(); c = c.Add(Quarter) {
			if r, ok := w.fake.RevisedAt(e, id, "electricity-offtake", c); ok && r.After(t0) {
				email, inst, q, at = e, id, c, r
			}
		}
	}
	if q.IsZero() {
		t.Fatal("no revision after t0 among 40 users")
	}
	if _, err := Login(context.Background(), w.opts, email, secret.New(sandbox.NET2GRIDDemoPassword)); err != nil {
		t.Fatal(err)
	}
	job := withBackfill(jobsOf(t, w.source(t))[UserID(email)], 72*time.Hour)
	ctx := context.Background()
	if _, err := w.env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	w.clock.Set(at) // the access token expired meanwhile: the source refreshes on its own
	if _, err := w.env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	key := inst + "/electricity-offtake/" + q.Format(time.RFC3339)
	var changes []string
	for _, ev := range w.env.Events(t) {
		if ev.Header.Get("ce-subject") == key {
			changes = append(changes, ev.Header.Get("ce-change"))
		}
	}
	if strings.Join(changes, ",") != "created,updated" {
		t.Fatalf("events of the revised quarter: %v", changes)
	}
}

func TestRotationSurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	w.login(t, 1)
	ctx := context.Background()
	id := UserID(sandbox.NET2GRIDDemoUser(1))
	first := jobsOf(t, w.source(t))[id]
	if _, err := w.env.Poll(ctx, withBackfill(first, time.Hour)); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(2 * time.Hour) // access token expired: the first source rotates
	if _, err := w.env.Poll(ctx, first); err != nil {
		t.Fatal(err)
	}
	// A restart: a new pipeline on the same NATS, a new Source on the same stores.
	env2 := pollertest.New(t, pollertest.WithServer(w.env.NATS), pollertest.WithNow(w.clock.Now))
	for range 3 {
		w.clock.Advance(2 * time.Hour)
		if _, err := env2.Poll(ctx, jobsOf(t, w.source(t))[id]); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	c := w.fake.Counters
	if c.Get("refresh_reused") != 0 || c.Get("refresh_rejected") != 0 || c.Get("token.refresh") != 4 {
		t.Fatalf("counters %v", c.Snapshot())
	}
}

func TestConcurrentRefreshSpendsEachTokenOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	w.login(t, 2)
	// Two replicas: two Sources sharing one token store.
	a, b := jobsOf(t, w.source(t)), jobsOf(t, w.source(t))
	ctx := context.Background()
	rounds := 5
	for range rounds {
		w.clock.Advance(61 * time.Minute)
		g, gctx := errgroup.WithContext(ctx)
		for _, jobs := range []map[string]*pollers.Job{a, b, a, b} {
			for _, j := range jobs {
				g.Go(func() error {
					_, err := j.Fetcher.Get(gctx, "/primary-installation", nil)
					return err
				})
			}
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	c := w.fake.Counters
	if c.Get("refresh_reused") != 0 || c.Get("refresh_rejected") != 0 {
		t.Fatalf("a refresh token was spent twice: %v", c.Snapshot())
	}
	if got := c.Get("token.refresh"); got != int64(2*rounds) {
		t.Fatalf("%d refreshes, want one per user and round (%d)", got, 2*rounds)
	}
}

func TestRevokedUserIsIsolated(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 3)
	w.login(t, 3)
	src := w.source(t)
	jobs := jobsOf(t, src)
	revoked := sandbox.NET2GRIDDemoUser(2)
	w.fake.RevokeRefresh(revoked)
	w.fake.RevokeAccess(revoked)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		id := UserID(sandbox.NET2GRIDDemoUser(i))
		res, err := w.env.Poll(ctx, withBackfill(jobs[id], 12*time.Hour))
		switch {
		case i == 2 && !errors.Is(err, auth.ErrLoginRequired):
			t.Fatalf("revoked user: %v, want ErrLoginRequired", err)
		case i != 2 && (err != nil || res.Published == 0):
			t.Fatalf("user %d: %+v %v", i, res, err)
		}
	}
	for _, h := range src.Health() {
		want := auth.StateOK
		if h.Subject == UserID(revoked) {
			want = auth.StateLoginRequired
		}
		if h.State != want || strings.Contains(h.LastError, "@") {
			t.Fatalf("health %+v, want %s", h, want)
		}
	}
	// An operator logs the user in again: the same Source recovers.
	if _, err := Login(ctx, w.opts, revoked, secret.New(sandbox.NET2GRIDDemoPassword)); err != nil {
		t.Fatal(err)
	}
	if res, err := w.env.Poll(ctx, withBackfill(jobs[UserID(revoked)], 12*time.Hour)); err != nil || res.Published == 0 {
		t.Fatalf("after a new login: %+v %v", res, err)
	}
	log := w.logs.String()
	if strings.Contains(log, "@") || strings.Contains(log, sandbox.NET2GRIDDemoPassword) || tokenRE.MatchString(log) {
		t.Fatal("an address, password or token reached a log line")
	}
}

func TestLoginChallengeNeedsPerson(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1)
	email := sandbox.NET2GRIDDemoUser(1)
	w.fake.SetChallenge(email, "SOFTWARE_TOKEN_MFA")
	_, err := Login(context.Background(), w.opts, email, secret.New(sandbox.NET2GRIDDemoPassword))
	if !errors.Is(err, auth.ErrLoginNeedsPerson) {
		t.Fatalf("login: %v, want ErrLoginNeedsPerson", err)
	}
	if _, _, err := w.store.Load(context.Background(), storeKey(UserID(email))); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("tokens stored after a challenge: %v", err)
	}
	if users, _ := w.reg.List(context.Background()); len(users) != 0 {
		t.Fatalf("user registered after a failed login: %v", users)
	}
}

func TestThousandUsersPoll(t *testing.T) {
	t.Parallel()
	const n = 1000
	w := newWorld(t, n)
	start := time.Now()
	w.login(t, n)
	t.Logf("logins: %v", time.Since(start))
	src := w.source(t)
	jobs, err := src.Jobs(context.Background())
	t.Logf("jobs: %v", time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != n {
		t.Fatalf("%d jobs, want %d", len(jobs), n)
	}
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(32)
	var mu sync.Mutex
	published := 0
	for _, j := range jobs {
		g.Go(func() error {
			res, err := w.env.Poll(ctx, withBackfill(j, 30*time.Minute))
			mu.Lock()
			published += res.Published
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("polls: %v", time.Since(start))
	subjects := map[string]bool{}
	for _, ev := range w.env.Events(t) {
		subjects[ev.Subject] = true
	}
	// Batch-fed users have nothing in the last half hour; every other user published.
	highRes := 0
	for i := 1; i <= n; i++ {
		e := sandbox.NET2GRIDDemoUser(i)
		for _, id := range w.fake.Installations(e) {
			if !w.fake.BatchFed(e, id) {
				highRes++
				break
			}
		}
	}
	if len(subjects) != highRes || published == 0 {
		t.Fatalf("%d users published (%d events), want %d", len(subjects), published, highRes)
	}
	if h := src.Health(); len(h) != n {
		t.Fatalf("health of %d users, want %d", len(h), n)
	}
	if c := w.fake.Counters; c.Get("requests.token") != n || c.Get("refresh_reused") != 0 {
		t.Fatalf("counters %v", c.Snapshot())
	}
}

func TestImportLogsInUsersWithPasswordsOnly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 2)
	file := sandbox.NET2GRIDDemoUser(1) + "," + sandbox.NET2GRIDDemoPassword + "\n" + sandbox.NET2GRIDDemoUser(2) + "\n"
	entries, err := ReadUserFile(strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	res := Import(context.Background(), w.opts, w.reg, entries)
	if len(res) != 2 || res[0].Err != nil || !res[0].LoggedIn || res[1].Err != nil || res[1].LoggedIn {
		t.Fatalf("import: %+v", res)
	}
	// Both are registered; only the logged-in one has installations and a job.
	if users, _ := w.reg.List(context.Background()); len(users) != 2 {
		t.Fatalf("registry: %+v", users)
	}
	src := w.source(t)
	jobs := jobsOf(t, src)
	if len(jobs) != 1 || jobs[UserID(sandbox.NET2GRIDDemoUser(1))] == nil {
		t.Fatalf("jobs: %v", jobs)
	}
	for _, h := range src.Health() {
		want := auth.StateOK
		if h.Subject == UserID(sandbox.NET2GRIDDemoUser(2)) {
			want = auth.StateLoginRequired
		}
		if h.State != want {
			t.Fatalf("health %+v, want %s", h, want)
		}
	}
}
