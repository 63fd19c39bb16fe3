package grex_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
)

var t0 = time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)

const testKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// fixture is one G-REX sandbox, one pipeline and one fake clock driving both, the limiter
// and the token source.
type fixture struct {
	clock   *quota.FakeClock
	fake    *sandbox.GREX
	srv     *httptest.Server
	env     *pollertest.Env
	store   *auth.KVStore
	limiter *quota.Limiter
}

func newFixture(t *testing.T, gopts sandbox.GREXOptions) *fixture {
	t.Helper()
	clock := quota.NewFakeClock(t0)
	gopts.Clock = clock
	fake := sandbox.NewGREX(gopts)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	env := pollertest.New(t, pollertest.WithNow(clock.Now))
	store, err := auth.NewKVStore(context.Background(), env.JS, auth.KVConfig{Key: secret.New(testKey)})
	if err != nil {
		t.Fatal(err)
	}
	limiter, err := quota.New(quota.Options{Upstream: "grex", Windows: grex.FairUse, Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Invariant 5: no write method ever reaches the registry.
		if n := fake.Counters.Get("write_attempts"); n != 0 {
			t.Errorf("%d write calls reached the registry", n)
		}
	})
	return &fixture{clock: clock, fake: fake, srv: srv, env: env, store: store, limiter: limiter}
}

func (f *fixture) options() grex.Options {
	return grex.Options{
		APIBase:      f.srv.URL,
		AuthorizeURL: f.srv.URL + f.fake.AuthorizePath(),
		TokenURL:     f.srv.URL + f.fake.TokenPath(),
		ClientID:     sandbox.GREXDemoClientID,
		RedirectURI:  sandbox.GREXDemoRedirectURI,
		Accounts:     f.fake.Accounts(),
		TokenStore:   f.store,
		Limiter:      f.limiter,
		Clock:        f.clock,
		HTTPClient:   f.srv.Client(),
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// browser is the person at the keyboard: when Login asks for the redirect, it opens the URL
// Login printed (after tamper, if set), signs in on the sandbox and pastes where it landed.
type browser struct {
	printed *bytes.Buffer
	client  *http.Client
	tamper  func(q url.Values)
	paste   *strings.Reader
}

var authorizeURLRE = regexp.MustCompile(`https?://\S+/oauth2/v2\.0/authorize\?\S+`)

func (b *browser) Read(p []byte) (int, error) {
	if b.paste == nil {
		raw := authorizeURLRE.FindString(b.printed.String())
		if raw == "" {
			return 0, errors.New("browser: no authorize URL printed")
		}
		u, err := url.Parse(raw)
		if err != nil {
			return 0, err
		}
		if b.tamper != nil {
			q := u.Query()
			b.tamper(q)
			u.RawQuery = q.Encode()
		}
		client := *b.client
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := client.Get(u.String())
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return 0, fmt.Errorf("browser: authorize answered %d", resp.StatusCode)
		}
		b.paste = strings.NewReader(resp.Header.Get("Location") + "\n")
	}
	return b.paste.Read(p)
}

// login runs `connector login grex` against the sandbox and returns what it printed.
func (f *fixture) login(t *testing.T, tamper func(url.Values)) (string, error) {
	t.Helper()
	var out bytes.Buffer
	in := &browser{printed: &out, client: f.srv.Client(), tamper: tamper}
	err := grex.Login(context.Background(), f.options(), in, &out)
	return out.String(), err
}

func (f *fixture) mustLogin(t *testing.T) {
	t.Helper()
	if out, err := f.login(t, nil); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
}

func (f *fixture) source(t *testing.T, mod func(*grex.Options)) *grex.Source {
	t.Helper()
	o := f.options()
	if mod != nil {
		mod(&o)
	}
	s, err := grex.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// job returns the source's job for dataset and account.
func job(t *testing.T, s *grex.Source, dataset, account string) *pollers.Job {
	t.Helper()
	jobs, err := s.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.Dataset.Name == dataset && j.Partition.ID == account {
			return j
		}
	}
	t.Fatalf("no job %s/%s among %d", dataset, account, len(jobs))
	return nil
}

func TestLoginCommandEndToEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		tamper  func(url.Values)
		wantErr string
		// what the sandbox saw
		tokens, pkceRejected int64
	}{
		{name: "signs in and saves the refresh token", tokens: 1},
		{name: "foreign state is refused before any exchange",
			tamper: func(q url.Values) { q.Set("state", "someone-elses-login") }, wantErr: "state"},
		{name: "code for another challenge fails the verifier check",
			tamper:  func(q url.Values) { q.Set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") },
			wantErr: "invalid_grant", pkceRejected: 1},
		{name: "refused authorize request is reported",
			tamper: func(q url.Values) { q.Set("code_challenge_method", "plain") }, wantErr: "refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, sandbox.GREXOptions{})
			out, err := f.login(t, tc.tamper)
			if got := f.fake.Counters.Get("tokens_issued"); got != tc.tokens {
				t.Errorf("tokens issued %d, want %d", got, tc.tokens)
			}
			if got := f.fake.Counters.Get("pkce_rejected"); got != tc.pkceRejected {
				t.Errorf("pkce rejected %d, want %d", got, tc.pkceRejected)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one about %q", err, tc.wantErr)
				}
				if _, _, err := f.store.Load(context.Background(), grex.StoreKey(sandbox.GREXDemoClientID)); !errors.Is(err, auth.ErrNotFound) {
					t.Fatalf("a failed login stored something: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("login: %v\n%s", err, out)
			}
			st, _, err := f.store.Load(context.Background(), grex.StoreKey(sandbox.GREXDemoClientID))
			if err != nil {
				t.Fatal(err)
			}
			wantExpiry := t0.Add(sandbox.GREXDefaultRefreshTTL)
			if !st.RefreshExpiry.Equal(wantExpiry) {
				t.Fatalf("refresh expiry %v, want %v", st.RefreshExpiry, wantExpiry)
			}
			if !strings.Contains(out, wantExpiry.Format(time.RFC3339)) {
				t.Errorf("output does not say when the refresh token expires:\n%s", out)
			}
			rt := st.RefreshToken.Reveal()
			if rt == "" || strings.Contains(out, rt) || strings.Contains(out, st.AccessToken.Reveal()) {
				t.Fatalf("login printed a token:\n%s", out)
			}
			kv, err := f.env.JS.KeyValue(context.Background(), auth.DefaultTokenBucket)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := kv.Get(context.Background(), grex.StoreKey(sandbox.GREXDemoClientID))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(raw.Value(), []byte(rt)) || bytes.Contains(raw.Value(), []byte("grex-rt-")) {
				t.Fatal("the refresh token is stored in clear")
			}
		})
	}
}

// eventsOf returns the stream's events of one dataset and partition.
func eventsOf(t *testing.T, env *pollertest.Env, dataset, account string) []pollertest.Event {
	t.Helper()
	subject := publish.Subject("energy", grex.SourceName, dataset, account)
	var out []pollertest.Event
	for _, e := range env.Events(t) {
		if e.Subject == subject {
			out = append(out, e)
		}
	}
	return out
}

func TestFirstLoadThenIncrementalChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sandbox.GREXOptions{Bundles: 230, EventEvery: 10 * time.Minute})
	f.mustLogin(t)
	src := f.source(t, nil)
	ctx := context.Background()
	certs := job(t, src, grex.DatasetCertificates, "FR0001")

	// First load: every bundle, in three pages of at most 100.
	res, err := f.env.Poll(ctx, certs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 230 || res.Pages != 3 {
		t.Fatalf("first load published %d in %d pages, want 230 in 3", res.Published, res.Pages)
	}
	first := eventsOf(t, f.env, grex.DatasetCertificates, "FR0001")
	if len(first) != 230 {
		t.Fatalf("%d events in the stream", len(first))
	}
	e := first[0]
	if e.Header.Get(publish.HeaderType) != "io.gridstream.grex.certificates" || e.Header.Get(publish.HeaderSubject) == "" {
		t.Fatalf("event headers %v", e.Header)
	}
	before := map[string]string{}
	for _, e := range first {
		before[e.Header.Get(publish.HeaderSubject)] = string(e.Data)
	}

	// Nothing changed: nothing new, one request.
	reqs := f.fake.APIRequests()
	res, err = f.env.Poll(ctx, certs)
	if err != nil || res.Published != 0 {
		t.Fatalf("idle poll published %d (%v)", res.Published, err)
	}
	if n := f.fake.APIRequests() - reqs; n != 1 {
		t.Fatalf("idle poll made %d requests, want 1", n)
	}

	// Two simulated hours: 12 events on the account; each changed bundle is a new revision.
	f.clock.Advance(2 * time.Hour)
	reqs = f.fake.APIRequests()
	res, err = f.env.Poll(ctx, certs)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.fake.APIRequests() - reqs; n != 1 {
		t.Fatalf("incremental poll made %d requests, want 1 (changed-since filter)", n)
	}
	all := eventsOf(t, f.env, grex.DatasetCertificates, "FR0001")
	changes := all[len(first):]
	if len(changes) == 0 || len(changes) != res.Published {
		t.Fatalf("%d change events, poll said %d", len(changes), res.Published)
	}
	revised, issued := 0, 0
	for _, e := range changes {
		var b struct{ ModifiedAt time.Time }
		if err := json.Unmarshal(e.Data, &b); err != nil {
			t.Fatal(err)
		}
		if b.ModifiedAt.Before(t0) || e.Header.Get(publish.HeaderTime) != b.ModifiedAt.Format(time.RFC3339Nano) {
			t.Fatalf("change event time %s, body ModifiedAt %s", e.Header.Get(publish.HeaderTime), b.ModifiedAt)
		}
		key := e.Header.Get(publish.HeaderSubject)
		if old, ok := before[key]; ok {
			revised++
			if old == string(e.Data) || e.Header.Get(publish.HeaderChange) != publish.ChangeUpdated {
				t.Fatalf("revision of %s: same body or not marked updated", key)
			}
		} else {
			issued++
		}
	}
	if revised == 0 || issued == 0 {
		t.Fatalf("%d revised, %d issued: want both over two simulated hours", revised, issued)
	}

	// The other datasets of the account load as well.
	for _, ds := range []string{grex.DatasetTransactions, grex.DatasetAccounts} {
		res, err := f.env.Poll(ctx, job(t, src, ds, "FR0001"))
		if err != nil || res.Published == 0 {
			t.Fatalf("%s: published %d (%v)", ds, res.Published, err)
		}
	}
	if v := f.fake.Violations(); v != 0 {
		t.Fatalf("%d fair-use violations", v)
	}
}

func TestRotationSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sandbox.GREXOptions{Bundles: 5})
	f.mustLogin(t)
	ctx := context.Background()
	key := grex.StoreKey(sandbox.GREXDemoClientID)
	stored := func() auth.Stored {
		st, _, err := f.store.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	loginRT := stored().RefreshToken.Reveal()

	first := f.source(t, nil)
	if _, err := f.env.Poll(ctx, job(t, first, grex.DatasetCertificates, "FR0001")); err != nil {
		t.Fatal(err)
	}
	if n := f.fake.Counters.Get("refreshes"); n != 0 {
		t.Fatalf("%d refreshes with a fresh access token from the login", n)
	}
	// The access token expires: the source refreshes, and the rotated token is in the store.
	f.clock.Advance(2 * time.Hour)
	if _, err := f.env.Poll(ctx, job(t, first, grex.DatasetCertificates, "FR0001")); err != nil {
		t.Fatal(err)
	}
	rotated := stored().RefreshToken.Reveal()
	if rotated == loginRT || f.fake.Counters.Get("refreshes") != 1 {
		t.Fatalf("refresh token not rotated in the store (refreshes %d)", f.fake.Counters.Get("refreshes"))
	}
	h := first.Health()[0]
	if h.State != auth.StateOK || !h.RefreshExpiry.Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("health after rotation %+v", h)
	}

	// Restart: a new source on the same store continues with the rotated token.
	f.clock.Advance(2 * time.Hour)
	second := f.source(t, nil)
	if _, err := f.env.Poll(ctx, job(t, second, grex.DatasetCertificates, "FR0001")); err != nil {
		t.Fatal(err)
	}
	if f.fake.Counters.Get("refreshes") != 2 || f.fake.Counters.Get("refresh_rejected") != 0 {
		t.Fatalf("refreshes %d, rejected %d: want 2 and 0 (no spent token reused)",
			f.fake.Counters.Get("refreshes"), f.fake.Counters.Get("refresh_rejected"))
	}
	if stored().RefreshToken.Reveal() == rotated {
		t.Fatal("second rotation not saved")
	}
}

func TestRejectedRefreshTokenNeedsLogin(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sandbox.GREXOptions{Bundles: 5})
	ctx := context.Background()

	// Before any login: the jobs fail with ErrLoginRequired and nothing reaches the registry.
	src := f.source(t, nil)
	_, err := f.env.Poll(ctx, job(t, src, grex.DatasetCertificates, "FR0001"))
	if !errors.Is(err, auth.ErrLoginRequired) {
		t.Fatalf("poll without login: %v, want ErrLoginRequired", err)
	}
	if n := f.fake.APIRequests(); n != 0 {
		t.Fatalf("%d registry requests without a login", n)
	}

	f.mustLogin(t)
	src = f.source(t, nil)
	if _, err := f.env.Poll(ctx, job(t, src, grex.DatasetCertificates, "FR0001")); err != nil {
		t.Fatal(err)
	}
	// An administrator revokes the session: the next renewal is refused.
	f.fake.RevokeRefresh()
	f.clock.Advance(2 * time.Hour)
	for _, ds := range []string{grex.DatasetCertificates, grex.DatasetTransactions} {
		_, err := f.env.Poll(ctx, job(t, src, ds, "FR0002"))
		if !errors.Is(err, auth.ErrLoginRequired) {
			t.Fatalf("%s after revocation: %v, want ErrLoginRequired", ds, err)
		}
	}
	h := src.Health()[0]
	if h.State != auth.StateLoginRequired || h.Source != grex.SourceName {
		t.Fatalf("health %+v, want login-required", h)
	}
	if n := f.fake.Counters.Get("refresh_rejected"); n != 1 {
		t.Fatalf("refresh attempts rejected %d, want 1 (no retry loop on a dead token)", n)
	}
	// A new login heals it without a restart.
	f.mustLogin(t)
	if _, err := f.env.Poll(ctx, job(t, src, grex.DatasetCertificates, "FR0002")); err != nil {
		t.Fatalf("after a new login: %v", err)
	}
}

func TestRequestsCarryFirewallHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sandbox.GREXOptions{Bundles: 5})
	f.mustLogin(t)
	src := f.source(t, nil)
	for _, j := range mustJobs(t, src) {
		if _, err := f.env.Poll(context.Background(), j); err != nil {
			t.Fatalf("%s: %v", j.ID(), err)
		}
	}
	if n := f.fake.Violations(); n != 0 {
		t.Fatalf("%d violations (missing header, slash in a query value, write call)", n)
	}
}

func mustJobs(t *testing.T, s *grex.Source) []*pollers.Job {
	t.Helper()
	jobs, err := s.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return jobs
}

// TestBacklogStaysWithinFairUse loads a backlog that needs more than an hour of the
// registry's budget, on one simulated clock shared by the sandbox, the limiter, the token
// source and the pipeline: the registry sees no violation, and every full hour of the backlog
// uses at least 95 % of the 500-request hourly budget.
func TestBacklogStaysWithinFairUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sandbox.GREXOptions{Bundles: 1500, EventEvery: 30 * time.Minute})
	f.mustLogin(t)
	src := f.source(t, func(o *grex.Options) {
		o.PageSize = 10 // a small page turns a modest backlog into many requests
		o.Datasets = []string{grex.DatasetCertificates, grex.DatasetTransactions}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Drive time: whenever the pipeline waits on the clock (the limiter), move to that moment.
	// Jobs run one after another, so no request is in flight while time jumps.
	var wg sync.WaitGroup
	driveCtx, stopDriving := context.WithCancel(ctx)
	wg.Go(func() {
		for f.clock.BlockUntil(driveCtx, 1) == nil {
			f.clock.AdvanceToNext()
		}
	})
	defer func() { stopDriving(); wg.Wait() }()

	published := 0
	for _, j := range mustJobs(t, src) {
		res, err := f.env.Poll(ctx, j)
		if err != nil {
			t.Fatalf("%s: %v", j.ID(), err)
		}
		published += res.Published
	}
	end := f.clock.Now()
	total := f.fake.APIRequests()
	t.Logf("%d requests, %d events, %s of simulated time", total, published, end.Sub(t0))

	if total <= 500 || end.Sub(t0) < time.Hour {
		t.Fatalf("backlog of %d requests over %s does not need more than an hour of budget", total, end.Sub(t0))
	}
	if v := f.fake.Violations(); v != 0 {
		t.Fatalf("%d fair-use violations (429: %d)", v, f.fake.Counters.Get("rate_limited.certificates")+f.fake.Counters.Get("rate_limited.transactions"))
	}
	if n := f.fake.Counters.Get("write_attempts"); n != 0 {
		t.Fatalf("%d write calls", n)
	}
	for h := t0; !h.Add(time.Hour).After(end); h = h.Add(time.Hour) {
		if used := f.fake.Served(h, h.Add(time.Hour)); used < 475 {
			t.Errorf("hour from %s: %d requests, want at least 475 of 500", h.Format(time.TimeOnly), used)
		}
	}
	if f.fake.Counters.Get("refreshes") == 0 {
		t.Error("no token refresh during a backlog longer than the access token's hour")
	}
}

func TestDemoLoginNeedsNoPerson(t *testing.T) {
	t.Parallel()
	f := newFixture(t, sandbox.GREXOptions{Bundles: 5, ManualApproval: true})
	var out bytes.Buffer
	approve := func(_ context.Context, authURL string) (string, error) { return f.fake.Approve(authURL) }
	if err := grex.LoginWith(context.Background(), f.options(), approve, &out); err != nil {
		t.Fatalf("demo login: %v\n%s", err, out.String())
	}
	res, err := f.env.Poll(context.Background(), job(t, f.source(t, nil), grex.DatasetCertificates, "FR0002"))
	if err != nil || res.Published != 5 {
		t.Fatalf("published %d (%v)", res.Published, err)
	}
}

var _ io.Reader = (*browser)(nil)
