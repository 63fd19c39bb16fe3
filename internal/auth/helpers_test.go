package auth

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/syncbuf"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer captures slog output from concurrent goroutines.
type logBuffer struct{ syncbuf.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// tokenServer is a minimal OAuth token endpoint and a protected resource, for tests.
// Refresh tokens rotate on every use (unless keepRefresh) and a refresh token presented
// twice is rejected and counted.
type tokenServer struct {
	t   testing.TB
	srv *httptest.Server

	clientID, clientSecret string
	users                  map[string]string // username -> password

	mu               sync.Mutex
	live             map[string]bool // refresh tokens that may be used
	used             map[string]bool // refresh tokens already spent
	access           map[string]bool // access tokens the resource accepts
	codes            map[string]string
	reuse            int
	refreshes        int
	requests         int
	forms            []url.Values
	basicOK          int
	accessTTL        int
	refreshExpiresIn int  // sent when > 0
	keepRefresh      bool // answer refreshes without a new refresh token
	challenge        bool // password grant answers with a challenge
	echo             bool // error answers quote the request's secrets
	failStatus       int  // every token request fails with this status when set
	secrets          []string
}

func newTokenServer(t testing.TB) *tokenServer {
	ts := &tokenServer{
		t: t, clientID: "client-one", clientSecret: "client-secret-" + rand.Text(),
		users: map[string]string{"alice@example.com": "pw-" + rand.Text()},
		live:  map[string]bool{}, used: map[string]bool{}, access: map[string]bool{},
		codes:     map[string]string{},
		accessTTL: 3600,
	}
	ts.secrets = append(ts.secrets, ts.clientSecret, ts.users["alice@example.com"])
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", ts.token)
	mux.HandleFunc("GET /api", ts.api)
	ts.srv = httptest.NewServer(mux)
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) URL() string { return ts.srv.URL + "/token" }

// issue makes a token pair; callers hold ts.mu.
func (ts *tokenServer) issue(withRefresh bool) map[string]any {
	at := "at-" + rand.Text()
	ts.access[at] = true
	ts.secrets = append(ts.secrets, at)
	ans := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": ts.accessTTL}
	if withRefresh {
		rt := "rt-" + rand.Text()
		ts.live[rt] = true
		ts.secrets = append(ts.secrets, rt)
		ans["refresh_token"] = rt
		if ts.refreshExpiresIn > 0 {
			ans["refresh_token_expires_in"] = ts.refreshExpiresIn
		}
	}
	return ans
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (ts *tokenServer) fail(w http.ResponseWriter, status int, code, desc string, quoted ...string) {
	if ts.echo {
		desc += " (got " + strings.Join(quoted, ", ") + ")"
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func (ts *tokenServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		ts.fail(w, 400, "invalid_request", "bad form")
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.requests++
	ts.forms = append(ts.forms, r.PostForm)
	f := r.PostForm
	if ts.failStatus != 0 {
		ts.fail(w, ts.failStatus, "temporarily_unavailable", "try later", f.Get("refresh_token"), f.Get("client_secret"))
		return
	}
	switch f.Get("grant_type") {
	case "client_credentials":
		id, sec, ok := r.BasicAuth()
		if !ok || id != ts.clientID || sec != ts.clientSecret {
			ts.fail(w, 401, "invalid_client", "bad client", sec)
			return
		}
		ts.basicOK++
		writeJSON(w, 200, ts.issue(false))
	case "password":
		if f.Get("client_id") != ts.clientID || f.Get("client_secret") != ts.clientSecret {
			ts.fail(w, 401, "invalid_client", "bad client", f.Get("client_secret"))
			return
		}
		if pw, ok := ts.users[f.Get("username")]; !ok || pw != f.Get("password") {
			ts.fail(w, 400, "invalid_grant", "bad username or password", f.Get("password"))
			return
		}
		if ts.challenge {
			writeJSON(w, 200, map[string]string{"challenge_name": "SMS_MFA", "session": "sess-" + rand.Text()})
			return
		}
		writeJSON(w, 200, ts.issue(true))
	case "authorization_code":
		challenge, ok := ts.codes[f.Get("code")]
		delete(ts.codes, f.Get("code"))
		if !ok || oauth2.S256ChallengeFromVerifier(f.Get("code_verifier")) != challenge {
			ts.fail(w, 400, "invalid_grant", "bad code or verifier", f.Get("code"), f.Get("code_verifier"))
			return
		}
		writeJSON(w, 200, ts.issue(true))
	case "refresh_token":
		rt := f.Get("refresh_token")
		if f.Get("client_id") != ts.clientID {
			ts.fail(w, 401, "invalid_client", "bad client")
			return
		}
		if ts.used[rt] {
			ts.reuse++
			ts.fail(w, 400, "invalid_grant", "refresh token already used", rt)
			return
		}
		if !ts.live[rt] {
			ts.fail(w, 400, "invalid_grant", "unknown refresh token", rt)
			return
		}
		ts.refreshes++
		if ts.keepRefresh {
			writeJSON(w, 200, ts.issue(false))
			return
		}
		delete(ts.live, rt)
		ts.used[rt] = true
		writeJSON(w, 200, ts.issue(true))
	default:
		ts.fail(w, 400, "unsupported_grant_type", "no")
	}
}

// api is the protected resource: 200 for a live access token, 401 otherwise.
func (ts *tokenServer) api(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !ts.access[tok] {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	fmt.Fprint(w, "ok")
}

// validAccess reports whether the resource accepts tok.
func (ts *tokenServer) validAccess(tok string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.access[tok]
}

// revokeAccess makes the resource reject every access token issued so far.
func (ts *tokenServer) revokeAccess() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.access)
}

// revokeRefresh makes every refresh token issued so far invalid.
func (ts *tokenServer) revokeRefresh() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.live)
}

// authorize stands in for the authorize page: it records the challenge and returns the
// redirect URL the browser would land on.
func (ts *tokenServer) authorize(t testing.TB, authURL string) string {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Fatalf("authorize URL lacks an S256 challenge: %s", authURL)
	}
	code := "code-" + rand.Text()
	ts.mu.Lock()
	ts.codes[code] = q.Get("code_challenge")
	ts.secrets = append(ts.secrets, code)
	ts.mu.Unlock()
	return q.Get("redirect_uri") + "?code=" + code + "&state=" + q.Get("state")
}

func (ts *tokenServer) counts() (requests, refreshes, reuse int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.requests, ts.refreshes, ts.reuse
}

// allSecrets is every secret the server knows or issued.
func (ts *tokenServer) allSecrets() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.secrets...)
}

// assertNoSecret fails when any secret appears in any of texts.
func assertNoSecret(t testing.TB, secrets []string, texts ...string) {
	t.Helper()
	for _, s := range secrets {
		if len(s) < 6 {
			continue
		}
		for _, txt := range texts {
			if strings.Contains(txt, s) {
				t.Errorf("secret %.6s… leaked into %q", s, txt)
			}
		}
	}
}

const alice = "alice@example.com"

// rotatingConfig is a NET2GRID-like configuration against ts.
func rotatingConfig(ts *tokenServer, store Store, clk *fakeClock, logs *logBuffer) RotatingConfig {
	return RotatingConfig{
		Name: "net2grid", Subject: SubjectOf(alice),
		TokenURL: ts.URL(), ClientID: ts.clientID, ClientSecret: secret.New(ts.clientSecret),
		HTTPClient: ts.srv.Client(), Store: store, Key: StoreKey("net2grid", alice),
		RefreshLifetime: 30 * 24 * time.Hour, Clock: clk.Now, Logger: logs.logger(),
		LeasePoll: 2 * time.Millisecond,
	}
}

// bootstrap logs alice in with her password.
func bootstrap(t testing.TB, ts *tokenServer, cfg RotatingConfig) {
	t.Helper()
	err := BootstrapPassword(t.Context(), cfg, alice, secret.New(ts.users[alice]), cfg.Store, cfg.Key)
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
}

// newRotating builds a source or fails the test.
func newRotating(t testing.TB, cfg RotatingConfig) *Rotating {
	t.Helper()
	r, err := NewRotating(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testKey is a random AES-256 key in hex.
func testKey() secret.Value {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return secret.New(fmt.Sprintf("%x", b))
}

// newKVStore opens the token bucket on s with key.
func newKVStore(t testing.TB, s *natstest.Server, key secret.Value) *KVStore {
	t.Helper()
	st, err := NewKVStore(t.Context(), s.JS, KVConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return st
}
