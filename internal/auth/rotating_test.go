package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/secret"
)

func TestRotatedRefreshTokenSavedBeforeUse(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
	bootstrap(t, ts, cfg)
	boot, _, _ := cfg.Store.Load(ctx, cfg.Key)

	src := newRotating(t, cfg)
	tok, err := src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, refreshes, _ := ts.counts(); refreshes != 0 {
		t.Fatalf("a fresh stored access token was not reused: %d refreshes", refreshes)
	}
	if tok.AccessToken != boot.AccessToken.Reveal() {
		t.Fatal("token differs from the stored one")
	}

	clk.Advance(time.Hour) // past the access expiry
	tok, err = src.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, _, _ := cfg.Store.Load(ctx, cfg.Key)
	if st.RefreshToken.Reveal() == boot.RefreshToken.Reveal() {
		t.Fatal("the rotated refresh token was not saved")
	}
	if st.AccessToken.Reveal() != tok.AccessToken || !ts.validAccess(tok.AccessToken) {
		t.Fatal("the handed-out access token is not the stored, valid one")
	}
	if st.LeaseOwner != "" {
		t.Fatal("lease left behind after a refresh")
	}
	if want := clk.Now().Add(time.Hour); !tok.Expiry.Equal(want) || !st.AccessExpiry.Equal(want) {
		t.Fatalf("access expiry %v, want %v", tok.Expiry, want)
	}
	if want := clk.Now().Add(cfg.RefreshLifetime); !st.RefreshExpiry.Equal(want) {
		t.Fatalf("refresh expiry %v, want the configured lifetime %v", st.RefreshExpiry, want)
	}

	// Cached until EarlyRenew before expiry.
	clk.Advance(time.Hour - defaultEarlyRenew - time.Second)
	if again, _ := src.Token(ctx); again.AccessToken != tok.AccessToken {
		t.Fatal("renewed too early")
	}
	clk.Advance(2 * time.Second)
	if again, _ := src.Token(ctx); again.AccessToken == tok.AccessToken {
		t.Fatal("not renewed within EarlyRenew of expiry")
	}
}

func TestRefreshAnswerWithoutRefreshTokenKeepsTheOldOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	ts.keepRefresh = true
	clk := newFakeClock()
	var logs logBuffer
	cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
	bootstrap(t, ts, cfg)
	boot, _, _ := cfg.Store.Load(ctx, cfg.Key)
	src := newRotating(t, cfg)
	for range 3 {
		clk.Advance(2 * time.Hour)
		if _, err := src.Token(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, _, _ := cfg.Store.Load(ctx, cfg.Key)
	if st.RefreshToken.Reveal() != boot.RefreshToken.Reveal() || !st.RefreshExpiry.Equal(boot.RefreshExpiry) {
		t.Fatal("the kept refresh token or its expiry changed")
	}
	if _, refreshes, _ := ts.counts(); refreshes != 3 {
		t.Fatalf("%d refreshes, want 3", refreshes)
	}
}

func TestRefreshFormFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tweak  func(*RotatingConfig)
		want   map[string]string
		absent []string
	}{
		{
			name: "net2grid sends the client secret in the form",
			want: map[string]string{"grant_type": "refresh_token", "client_id": "client-one"}, absent: []string{"scope", "redirect_uri"},
		},
		{
			name: "grex sends scope and redirect_uri",
			tweak: func(c *RotatingConfig) {
				c.ClientSecret = secret.Value{}
				c.Scopes = []string{"https://gcrfdemo.onmicrosoft.com/app/user_impersonation", "openid", "offline_access"}
				c.RedirectURL = "https://gcrfdemo.b2clogin.com/oauth2/nativeclient"
				c.ExtraParams = map[string][]string{"resource": {"x"}}
			},
			want: map[string]string{
				"grant_type": "refresh_token", "client_id": "client-one",
				"scope":        "https://gcrfdemo.onmicrosoft.com/app/user_impersonation openid offline_access",
				"redirect_uri": "https://gcrfdemo.b2clogin.com/oauth2/nativeclient", "resource": "x",
			},
			absent: []string{"client_secret"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			clk := newFakeClock()
			var logs logBuffer
			cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
			bootstrap(t, ts, cfg)
			if tc.tweak != nil {
				tc.tweak(&cfg)
			}
			clk.Advance(2 * time.Hour)
			if _, err := newRotating(t, cfg).Token(t.Context()); err != nil {
				t.Fatal(err)
			}
			ts.mu.Lock()
			f := ts.forms[len(ts.forms)-1]
			ts.mu.Unlock()
			for k, v := range tc.want {
				if got := strings.Join(f[k], ","); got != v {
					t.Errorf("form %s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tc.absent {
				if _, ok := f[k]; ok {
					t.Errorf("form has %s", k)
				}
			}
			if len(f["refresh_token"]) != 1 || f["refresh_token"][0] == "" {
				t.Error("form lacks the refresh token")
			}
			if tc.tweak == nil && (len(f["client_secret"]) != 1 || f["client_secret"][0] != ts.clientSecret) {
				t.Error("net2grid form lacks the client secret")
			}
		})
	}
}

func TestRotationSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	key := testKey()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer

	s1 := natstest.RunIn(t, dir)
	cfg := rotatingConfig(ts, newKVStore(t, s1, key), clk, &logs)
	bootstrap(t, ts, cfg)
	first := newRotating(t, cfg)
	clk.Advance(2 * time.Hour)
	tok1, err := first.Token(ctx) // rotates
	if err != nil {
		t.Fatal(err)
	}
	s1.Shutdown()
	s1.WaitForShutdown()

	// A new process: new server on the same data, new store, new source.
	s2 := natstest.RunIn(t, dir)
	cfg.Store = newKVStore(t, s2, key)
	second := newRotating(t, cfg)
	_, before, _ := ts.counts()
	tok2, err := second.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, after, _ := ts.counts(); after != before || tok2.AccessToken != tok1.AccessToken {
		t.Fatal("the restarted source did not reuse the stored access token")
	}
	clk.Advance(2 * time.Hour)
	tok3, err := second.Token(ctx) // rotates with the token the first process saved
	if err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	if !ts.validAccess(tok3.AccessToken) {
		t.Fatal("refreshed token invalid")
	}
	if _, refreshes, reuse := ts.counts(); refreshes != 2 || reuse != 0 {
		t.Fatalf("refreshes %d, reuse %d; want 2 and 0", refreshes, reuse)
	}
}

func TestConcurrentRefreshUsesEachRefreshTokenOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	key := testKey()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer

	// Two replicas: separate connections, stores and sources over one bucket.
	nc, err := nats.Connect(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js2, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	store2, err := NewKVStore(ctx, js2, KVConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	cfgA := rotatingConfig(ts, newKVStore(t, s, key), clk, &logs)
	cfgB := cfgA
	cfgB.Store = store2
	bootstrap(t, ts, cfgA)
	sources := []*Rotating{newRotating(t, cfgA), newRotating(t, cfgB)}

	const rounds = 15
	var wg sync.WaitGroup
	errs := make(chan error, 4*rounds)
	for i, src := range sources {
		for g := range 2 { // two goroutines per replica as well
			wg.Go(func() {
				for n := range rounds {
					tok, err := src.Token(ctx)
					if err != nil {
						errs <- fmt.Errorf("replica %d/%d round %d: %w", i, g, n, err)
						return
					}
					if !ts.validAccess(tok.AccessToken) {
						errs <- fmt.Errorf("replica %d round %d: token the server never issued", i, n)
					}
					src.Invalidate() // as after a 401: forces the next call to refresh or reload
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_, refreshes, reuse := ts.counts()
	if reuse != 0 {
		t.Fatalf("a refresh token was used %d extra times", reuse)
	}
	if refreshes < rounds {
		t.Fatalf("only %d refreshes: the test did not exercise rotation", refreshes)
	}
	t.Logf("%d refreshes, no reuse", refreshes)
}

func TestRejectedRefreshTokenIsLoginRequired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
	bootstrap(t, ts, cfg)
	src := newRotating(t, cfg)
	if _, err := src.Token(ctx); err != nil {
		t.Fatal(err)
	}
	ts.revokeRefresh()
	clk.Advance(2 * time.Hour)

	_, err := src.Token(ctx)
	if !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v, want ErrLoginRequired", err)
	}
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_grant" || te.Status != 400 {
		t.Fatalf("err = %v, want the token endpoint's invalid_grant", err)
	}
	h := src.Health()
	if h.State != StateLoginRequired || h.LastError == "" || h.Source != "net2grid" || h.Subject != SubjectOf(alice) {
		t.Fatalf("health %+v", h)
	}
	requests, _, _ := ts.counts()
	if _, err := src.Token(ctx); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("second call: %v", err)
	}
	if again, _, _ := ts.counts(); again != requests {
		t.Fatal("a rejected refresh token was sent again")
	}
	if n := strings.Count(logs.String(), "a new login is needed"); n != 1 {
		t.Fatalf("login-required logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatal("login-required not logged at error level")
	}

	// A new login brings the source back without a restart.
	bootstrap(t, ts, cfg)
	if _, err := src.Token(ctx); err != nil {
		t.Fatalf("after a new login: %v", err)
	}
	if h := src.Health(); h.State != StateOK || h.LastError != "" {
		t.Fatalf("health after login %+v", h)
	}
}

func TestNoStoredTokenIsLoginRequired(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	var logs logBuffer
	src := newRotating(t, rotatingConfig(ts, NewMemoryStore(), newFakeClock(), &logs))
	if _, err := src.Token(t.Context()); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v, want ErrLoginRequired", err)
	}
	if src.Health().State != StateLoginRequired {
		t.Fatal("health not login-required")
	}
}

func TestTokenEndpointOutageIsErrorNotLoginRequired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
	bootstrap(t, ts, cfg)
	src := newRotating(t, cfg)
	clk.Advance(2 * time.Hour)
	ts.mu.Lock()
	ts.failStatus = 503
	ts.mu.Unlock()
	_, err := src.Token(ctx)
	if err == nil || errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v, want a non-login error", err)
	}
	if h := src.Health(); h.State != StateError {
		t.Fatalf("health %+v", h)
	}
	st, _, _ := cfg.Store.Load(ctx, cfg.Key)
	if st.LeaseOwner != "" {
		t.Fatal("lease not released after a failed refresh")
	}
	ts.mu.Lock()
	ts.failStatus = 0
	ts.mu.Unlock()
	if _, err := src.Token(ctx); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if src.Health().State != StateOK {
		t.Fatal("health did not recover")
	}
}

func TestRefreshTokenNearExpiryIsExpiring(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		refreshExpiresIn int // answer's refresh_token_expires_in; 0: absent
		lifetime         time.Duration
		warning          time.Duration
		advance          time.Duration // after the first refresh
		want             State
	}{
		{"configured lifetime, far from expiry", 0, 24 * time.Hour, 6 * time.Hour, time.Hour, StateOK},
		{"configured lifetime, inside the window", 0, 24 * time.Hour, 6 * time.Hour, 19 * time.Hour, StateExpiring},
		{"answer's lifetime wins over the configured one", 3600, 24 * time.Hour, 6 * time.Hour, 0, StateExpiring},
		{"answer's long lifetime", 14 * 86400, 24 * time.Hour, 6 * time.Hour, 19 * time.Hour, StateOK},
		{"default window is a quarter of the lifetime", 0, 24 * time.Hour, 0, 17 * time.Hour, StateOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			ts := newTokenServer(t)
			ts.refreshExpiresIn = tc.refreshExpiresIn
			clk := newFakeClock()
			var logs logBuffer
			cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
			cfg.RefreshLifetime, cfg.ExpiryWarning = tc.lifetime, tc.warning
			cfg.Name = "grex"
			bootstrap(t, ts, cfg)
			src := newRotating(t, cfg)
			clk.Advance(2 * time.Hour)
			if _, err := src.Token(ctx); err != nil {
				t.Fatal(err)
			}
			clk.Advance(tc.advance)
			h := src.Health()
			if h.State != tc.want {
				t.Fatalf("state %s, want %s (refresh expiry %v, now %v)", h.State, tc.want, h.RefreshExpiry, clk.Now())
			}
			src.Health()
			_, _ = src.Token(ctx)
			logged := strings.Count(logs.String(), "refresh token expires soon")
			if (tc.want == StateExpiring && logged != 1) || (tc.want == StateOK && logged != 0) {
				t.Fatalf("expiring logged %d times:\n%s", logged, logs.String())
			}
		})
	}
}

func TestFixedRefreshExpiryIsNotExtendedByRotation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
	cfg.RefreshLifetime, cfg.FixedRefreshExpiry = 24*time.Hour, true
	bootstrap(t, ts, cfg)
	boot, _, _ := cfg.Store.Load(ctx, cfg.Key)
	src := newRotating(t, cfg)
	clk.Advance(2 * time.Hour)
	if _, err := src.Token(ctx); err != nil {
		t.Fatal(err)
	}
	if h := src.Health(); !h.RefreshExpiry.Equal(boot.RefreshExpiry) {
		t.Fatalf("refresh expiry moved from %v to %v", boot.RefreshExpiry, h.RefreshExpiry)
	}
}

func TestCanceledContextStopsWaitingForAnotherReplica(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
	bootstrap(t, ts, cfg)
	clk.Advance(2 * time.Hour)
	// Another replica holds a lease and never finishes.
	st, rev, _ := cfg.Store.Load(t.Context(), cfg.Key)
	st.LeaseOwner, st.LeaseUntil = "other", clk.Now().Add(time.Minute)
	if _, err := cfg.Store.Save(t.Context(), cfg.Key, st, rev); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := newRotating(t, cfg).Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if _, refreshes, _ := ts.counts(); refreshes != 0 {
		t.Fatal("refreshed under another replica's lease")
	}
	// Once the lease lapses, the source takes over.
	clk.Advance(2 * time.Minute)
	if _, err := newRotating(t, cfg).Token(t.Context()); err != nil {
		t.Fatalf("after the lease lapsed: %v", err)
	}
}
