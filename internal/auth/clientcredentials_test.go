package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/secret"
)

func (ts *tokenServer) secretValue() secret.Value { return secret.New(ts.clientSecret) }

func TestClientCredentialsUsesBasicAuthAndRenewsBeforeExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ts := newTokenServer(t)
	ts.accessTTL = 7200
	clk := newFakeClock()
	cc, err := NewClientCredentials(ClientCredentialsConfig{
		TokenURL: ts.URL(), ClientID: ts.clientID, ClientSecret: ts.secretValue(),
		HTTPClient: ts.srv.Client(), EarlyRenew: 5 * time.Minute, Clock: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(2 * time.Hour); !tok.Expiry.Equal(want) {
		t.Fatalf("expiry %v, want %v (from expires_in and the injected clock)", tok.Expiry, want)
	}
	ts.mu.Lock()
	basic, form := ts.basicOK, ts.forms[0]
	ts.mu.Unlock()
	if basic != 1 || form.Get("client_secret") != "" || form.Get("grant_type") != "client_credentials" {
		t.Fatalf("client credentials not sent as Basic auth: basic=%d form=%v", basic, form)
	}

	steps := []struct {
		name    string
		advance time.Duration
		inval   bool
		renewed bool
	}{
		{"cached while fresh", time.Hour, false, false},
		{"still cached just outside EarlyRenew", 54*time.Minute + 59*time.Second, false, false},
		{"renewed inside EarlyRenew", 2 * time.Second, false, true},
		{"cached again", time.Minute, false, false},
		{"renewed after Invalidate", 0, true, true},
	}
	prev := tok.AccessToken
	for _, st := range steps {
		clk.Advance(st.advance)
		if st.inval {
			cc.Invalidate()
		}
		got, err := cc.Token(ctx)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if renewed := got.AccessToken != prev; renewed != st.renewed {
			t.Fatalf("%s: renewed=%v, want %v", st.name, renewed, st.renewed)
		}
		prev = got.AccessToken
	}
	if h := cc.Health(); h.State != StateOK || h.Source != "ingrid" || h.AccessExpiry.IsZero() {
		t.Fatalf("health %+v", h)
	}
}

func TestClientCredentialsRejectedSecretIsErrorWithoutSecret(t *testing.T) {
	t.Parallel()
	ts := newTokenServer(t)
	ts.echo = true
	var logs logBuffer
	wrong := "wrong-secret-" + ts.clientSecret
	cc, err := NewClientCredentials(ClientCredentialsConfig{
		TokenURL: ts.URL(), ClientID: ts.clientID, ClientSecret: secret.New(wrong),
		HTTPClient: ts.srv.Client(), Logger: logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cc.Token(t.Context())
	var te *TokenError
	if !errors.As(err, &te) || te.Status != 401 || te.Code != "invalid_client" {
		t.Fatalf("err = %v, want a 401 invalid_client TokenError", err)
	}
	h := cc.Health()
	if h.State != StateError {
		t.Fatalf("health %+v", h)
	}
	assertNoSecret(t, append(ts.allSecrets(), wrong), err.Error(), h.LastError, logs.String())
	if !strings.Contains(err.Error(), "[REDACTED]") {
		t.Fatalf("the echoed secret was not scrubbed but dropped? %v", err)
	}
}
