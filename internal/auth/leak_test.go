package auth

import (
	"fmt"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/secret"
)

// TestNoSecretInErrorsOrLogs drives every flow into its failures against a token endpoint that
// echoes the secrets it was sent, and checks no secret reaches an error, a Health or a log line.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := natstest.Run(t)
	ts := newTokenServer(t)
	ts.echo = true
	clk := newFakeClock()
	var logs logBuffer
	encKey, otherKey := testKey(), testKey()
	store := newKVStore(t, s, encKey)
	cfg := rotatingConfig(ts, store, clk, &logs)
	var texts []string
	note := func(err error) {
		if err != nil {
			texts = append(texts, err.Error(), fmt.Sprintf("%+v", err))
		}
	}

	// Password login: wrong password, then right.
	note(BootstrapPassword(ctx, cfg, alice, secret.New("pw-wrong-"+ts.users[alice]), store, cfg.Key))
	bootstrap(t, ts, cfg)
	st, _, _ := store.Load(ctx, cfg.Key)
	cfg.Logger.Info("stored tokens", "stored", st)
	texts = append(texts, fmt.Sprintf("%v %+v %#v", st, st, st))

	// Refresh through an outage that echoes the refresh token, then a rejection.
	src := newRotating(t, cfg)
	clk.Advance(2 * time.Hour)
	ts.mu.Lock()
	ts.failStatus = 500
	ts.mu.Unlock()
	_, err := src.Token(ctx)
	note(err)
	texts = append(texts, src.Health().LastError)
	ts.mu.Lock()
	ts.failStatus = 0
	ts.mu.Unlock()
	tok, err := src.Token(ctx)
	note(err)
	ts.revokeRefresh()
	src.Invalidate()
	clk.Advance(2 * time.Hour)
	_, err = src.Token(ctx)
	note(err)
	texts = append(texts, src.Health().LastError, fmt.Sprintf("%+v", src.Health()))

	// A code exchange with a wrong code.
	pk, err := NewPKCELogin(grexConfig(ts, store, clk, &logs))
	if err != nil {
		t.Fatal(err)
	}
	note(pk.Exchange(ctx, "code-not-issued-"+ts.clientSecret))

	// Client credentials with a wrong secret.
	cc, _ := NewClientCredentials(ClientCredentialsConfig{
		TokenURL: ts.URL(), ClientID: ts.clientID, ClientSecret: secret.New("cs-wrong-" + ts.clientSecret),
		HTTPClient: ts.srv.Client(), Logger: logs.logger(),
	})
	_, err = cc.Token(ctx)
	note(err)
	texts = append(texts, cc.Health().LastError)

	// A wrong encryption key.
	wrong := newKVStore(t, s, otherKey)
	wcfg := cfg
	wcfg.Store = wrong
	_, err = newRotating(t, wcfg).Token(ctx)
	note(err)

	texts = append(texts, logs.String())
	secrets := append(ts.allSecrets(), encKey.Reveal(), otherKey.Reveal(), pk.verifier, tok.AccessToken)
	assertNoSecret(t, secrets, texts...)
	if len(texts) < 10 {
		t.Fatalf("only %d texts checked", len(texts))
	}
}
