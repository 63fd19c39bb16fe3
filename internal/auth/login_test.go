package auth

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/secret"
)

func TestBootstrapPassword(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		password  func(ts *tokenServer) string
		challenge bool
		wantErr   error // nil: success
	}{
		{"saves the refresh token", func(ts *tokenServer) string { return ts.users[alice] }, false, nil},
		{"multi-factor challenge needs a person", func(ts *tokenServer) string { return ts.users[alice] }, true, ErrLoginNeedsPerson},
		{"wrong password", func(*tokenServer) string { return "pw-wrong-password" }, false, errTokenError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			ts := newTokenServer(t)
			ts.challenge = tc.challenge
			ts.echo = true
			clk := newFakeClock()
			var logs logBuffer
			cfg := rotatingConfig(ts, NewMemoryStore(), clk, &logs)
			pw := tc.password(ts)
			err := BootstrapPassword(ctx, cfg, alice, secret.New(pw), cfg.Store, cfg.Key)
			st, _, loadErr := cfg.Store.Load(ctx, cfg.Key)
			if tc.wantErr == nil {
				if err != nil || loadErr != nil {
					t.Fatalf("bootstrap %v, load %v", err, loadErr)
				}
				if st.RefreshToken.IsZero() || !st.RefreshExpiry.Equal(clk.Now().Add(30*24*time.Hour)) {
					t.Fatalf("stored %+v", st)
				}
				ts.mu.Lock()
				f := ts.forms[0]
				ts.mu.Unlock()
				for k, v := range map[string]string{"grant_type": "password", "client_id": ts.clientID, "client_secret": ts.clientSecret, "username": alice, "password": pw} {
					if f.Get(k) != v {
						t.Errorf("form %s wrong", k)
					}
				}
				return
			}
			if tc.wantErr == errTokenError {
				var te *TokenError
				if !errors.As(err, &te) || te.Code != "invalid_grant" {
					t.Fatalf("err = %v, want invalid_grant", err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !errors.Is(loadErr, ErrNotFound) {
				t.Fatal("a failed login stored something")
			}
			assertNoSecret(t, append(ts.allSecrets(), pw, alice), err.Error(), logs.String())
		})
	}
}

// errTokenError marks a case expecting a *TokenError.
var errTokenError = errors.New("token error")

func TestPasswordIsNeverStored(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	ts := newTokenServer(t)
	var logs logBuffer
	cfg := rotatingConfig(ts, newKVStore(t, s, testKey()), newFakeClock(), &logs)
	bootstrap(t, ts, cfg)
	st, _, err := cfg.Store.Load(ctx, cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	pw := ts.users[alice]
	for _, v := range []string{st.RefreshToken.Reveal(), st.AccessToken.Reveal(), st.TokenType, st.LeaseOwner} {
		if strings.Contains(v, pw) {
			t.Fatal("the password is in the store")
		}
	}
	assertNoSecret(t, []string{pw}, logs.String())
}

func grexConfig(ts *tokenServer, store Store, clk *fakeClock, logs *logBuffer) PKCEConfig {
	cfg := rotatingConfig(ts, store, clk, logs)
	cfg.Name, cfg.Subject, cfg.Key = "grex", "operator", StoreKey("grex", "operator")
	cfg.ClientSecret = secret.Value{}
	cfg.Scopes = []string{"https://gcrfdemo.onmicrosoft.com/app/user_impersonation", "openid", "offline_access"}
	cfg.RedirectURL = "https://gcrfdemo.b2clogin.com/oauth2/nativeclient"
	cfg.RefreshLifetime = 24 * time.Hour
	return PKCEConfig{AuthURL: ts.srv.URL + "/authorize", RotatingConfig: cfg}
}

func TestPKCELoginSavesRefreshTokenAndRotationFollows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs logBuffer
	cfg := grexConfig(ts, NewMemoryStore(), clk, &logs)
	login, err := NewPKCELogin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(login.AuthURL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range map[string]string{
		"response_type": "code", "client_id": ts.clientID, "redirect_uri": cfg.RedirectURL,
		"scope": strings.Join(cfg.Scopes, " "), "state": login.State(), "code_challenge_method": "S256",
	} {
		if q.Get(k) != v {
			t.Errorf("authorize URL %s = %q, want %q", k, q.Get(k), v)
		}
	}
	if strings.Contains(login.AuthURL(), login.verifier) {
		t.Fatal("the authorize URL holds the code verifier")
	}
	other, _ := NewPKCELogin(cfg)
	if other.State() == login.State() || other.verifier == login.verifier {
		t.Fatal("two logins share state or verifier")
	}

	redirect := ts.authorize(t, login.AuthURL())
	if _, err := ParseRedirect(redirect, other.State()); err == nil {
		t.Fatal("a redirect for another login was accepted")
	}
	code, err := ParseRedirect(redirect, login.State())
	if err != nil {
		t.Fatal(err)
	}
	if err := login.Exchange(ctx, code); err != nil {
		t.Fatal(err)
	}
	ts.mu.Lock()
	f := ts.forms[len(ts.forms)-1]
	ts.mu.Unlock()
	for _, k := range []string{"code_verifier", "client_id", "redirect_uri", "scope", "code"} {
		if f.Get(k) == "" {
			t.Errorf("exchange form lacks %s", k)
		}
	}
	if f.Get("grant_type") != "authorization_code" {
		t.Errorf("grant_type %q", f.Get("grant_type"))
	}
	if err := login.Exchange(ctx, code); err == nil {
		t.Fatal("a code was exchanged twice")
	}

	src := newRotating(t, cfg.RotatingConfig)
	clk.Advance(2 * time.Hour)
	if _, err := src.Token(ctx); err != nil {
		t.Fatalf("refresh after login: %v", err)
	}
	ts.mu.Lock()
	f = ts.forms[len(ts.forms)-1]
	ts.mu.Unlock()
	if f.Get("grant_type") != "refresh_token" || f.Get("scope") == "" || f.Get("redirect_uri") != cfg.RedirectURL {
		t.Fatalf("grex refresh form %v", redactForm(f))
	}
	if h := src.Health(); h.State != StateOK || !h.RefreshExpiry.Equal(clk.Now().Add(24*time.Hour)) {
		t.Fatalf("health %+v", h)
	}
}

func redactForm(f url.Values) []string {
	var keys []string
	for k := range f {
		keys = append(keys, k)
	}
	return keys
}

func TestParseRedirect(t *testing.T) {
	t.Parallel()
	const state = "st-123"
	cases := []struct {
		name, input, state, code, errHas string
	}{
		{"full redirect URL", "https://gcrfdemo.b2clogin.com/oauth2/nativeclient?state=st-123&code=eyJraWQi.abc-_", state, "eyJraWQi.abc-_", ""},
		{"with surrounding spaces", "  https://x.example/cb?code=abc&state=st-123\n", state, "abc", ""},
		{"query only", "?code=abc&state=st-123", state, "abc", ""},
		{"fragment response", "https://x.example/cb#code=abc&state=st-123", state, "abc", ""},
		{"bare code", "eyJraWQiOiJjcGltY29yZV8wOTI1MjAxNSIsInZlciI6IjEuMCJ9.abc", state, "eyJraWQiOiJjcGltY29yZV8wOTI1MjAxNSIsInZlciI6IjEuMCJ9.abc", ""},
		{"state mismatch", "https://x.example/cb?code=abc&state=other", state, "", "state does not match"},
		{"state missing", "https://x.example/cb?code=abc", state, "", "state does not match"},
		{"no state wanted", "https://x.example/cb?code=abc", "", "abc", ""},
		{"error redirect", "https://x.example/cb?error=access_denied&error_description=AADB2C90118%3A+The+user+has+forgotten+their+password.&state=st-123", state, "", "access_denied: AADB2C90118: The user has forgotten their password."},
		{"no code", "https://x.example/cb?state=st-123", state, "", "has no code"},
		{"empty", "   ", state, "", "nothing pasted"},
		{"garbage", "hello world", state, "", "neither a redirect URL nor a code"},
		{"bad characters in code", "https://x.example/cb?code=a%20b&state=st-123", state, "", "unexpected characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, err := ParseRedirect(tc.input, tc.state)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want it to say %q", err, tc.errHas)
				}
				if strings.Contains(err.Error(), "abc") {
					t.Fatalf("error quotes the code: %v", err)
				}
				return
			}
			if err != nil || code != tc.code {
				t.Fatalf("code %q err %v, want %q", code, err, tc.code)
			}
		})
	}
}

func FuzzParseRedirect(f *testing.F) {
	f.Add("https://gcrfdemo.b2clogin.com/oauth2/nativeclient?code=abc&state=s1", "s1")
	f.Add("?error=access_denied&error_description=x", "s1")
	f.Add("eyJhbGciOi.abc_def-ghi", "")
	f.Fuzz(func(t *testing.T, input, state string) {
		code, err := ParseRedirect(input, state)
		if err != nil {
			if code != "" {
				t.Fatal("code with an error")
			}
			// The code the input carries never shows in the error.
			if u, perr := url.Parse(strings.TrimSpace(input)); perr == nil {
				if c := u.Query().Get("code"); len(c) >= 8 && strings.Contains(err.Error(), c) {
					t.Fatalf("error quotes the code: %v", err)
				}
			}
			return
		}
		if !isCodeText(code) {
			t.Fatalf("returned code %q has unexpected characters", code)
		}
		if in := strings.TrimSpace(input); !strings.ContainsAny(in, "?=&#:/") && code != in {
			t.Fatalf("bare code %q came back as %q", in, code)
		}
	})
}
