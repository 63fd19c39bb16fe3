package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gridstream/gridstream/internal/secret"
)

// defaultEarlyRenew is how long before expiry an access token is renewed when not configured.
const defaultEarlyRenew = 2 * time.Minute

// ClientCredentialsConfig configures a client-credentials source (INGRID).
type ClientCredentialsConfig struct {
	Name         string // upstream name for Health and logs; "ingrid" when empty
	TokenURL     string
	ClientID     string
	ClientSecret secret.Value
	Scopes       []string
	HTTPClient   *http.Client  // for token requests; http.DefaultClient when nil
	EarlyRenew   time.Duration // renew this long before expiry; 2 min when zero
	Clock        Clock         // time.Now when nil
	Logger       *slog.Logger  // slog.DiscardHandler when nil
}

// ClientCredentials is a Source that fetches access tokens with the OAuth 2.0 client
// credentials grant, client id and secret sent as HTTP Basic auth, and caches each token until
// shortly before it expires.
type ClientCredentials struct {
	cfg    ClientCredentialsConfig
	oauth  clientcredentials.Config
	logger *slog.Logger

	fetchMu sync.Mutex // one token request at a time; mu is never held across one

	mu      sync.Mutex
	tok     *oauth2.Token
	expiry  time.Time // by cfg.Clock
	lastErr string
	failing bool
}

// NewClientCredentials returns a client-credentials source; it fetches no token until asked.
func NewClientCredentials(cfg ClientCredentialsConfig) (*ClientCredentials, error) {
	if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.ClientSecret.IsZero() {
		return nil, errors.New("auth: client credentials need TokenURL, ClientID and ClientSecret")
	}
	if cfg.Name == "" {
		cfg.Name = "ingrid"
	}
	if cfg.EarlyRenew <= 0 {
		cfg.EarlyRenew = defaultEarlyRenew
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ClientCredentials{
		cfg: cfg,
		oauth: clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret.Reveal(),
			TokenURL:     cfg.TokenURL,
			Scopes:       cfg.Scopes,
			AuthStyle:    oauth2.AuthStyleInHeader,
		},
		logger: logger.With("source", cfg.Name),
	}, nil
}

// Token returns the cached access token, or fetches a new one when it is within EarlyRenew of
// its expiry or was invalidated.
func (c *ClientCredentials) Token(ctx context.Context) (*oauth2.Token, error) {
	if tok := c.cached(); tok != nil {
		return tok, nil
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if tok := c.cached(); tok != nil {
		return tok, nil
	}
	if c.cfg.HTTPClient != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient)
	}
	tok, err := c.oauth.Token(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		err = c.safeError(err)
		c.lastErr = err.Error()
		if !c.failing {
			c.logger.Error("access token request failed", "error", c.lastErr)
		}
		c.failing = true
		return nil, err
	}
	c.expiry = c.cfg.Clock.now().Add(lifetime(tok))
	c.tok = &oauth2.Token{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: c.expiry}
	if c.failing {
		c.logger.Info("access token request recovered")
	}
	c.failing, c.lastErr = false, ""
	c.logger.Debug("access token renewed", "expiry", c.expiry)
	return cloneToken(c.tok), nil
}

// cached returns the cached token while it is outside EarlyRenew of its expiry.
func (c *ClientCredentials) cached() *oauth2.Token {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok != nil && c.cfg.Clock.now().Before(c.expiry.Add(-c.cfg.EarlyRenew)) {
		return cloneToken(c.tok)
	}
	return nil
}

// Invalidate drops the cached access token.
func (c *ClientCredentials) Invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tok = nil
}

// Health reports the source's state; "error" while token requests fail.
func (c *ClientCredentials) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := Health{Source: c.cfg.Name, Subject: c.cfg.ClientID, State: StateOK, LastError: c.lastErr}
	if c.tok != nil {
		h.AccessExpiry = c.expiry
	}
	if c.failing {
		h.State = StateError
	}
	return h
}

// safeError turns an oauth2 error into one that cannot carry the answer body.
func (c *ClientCredentials) safeError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		secrets := []string{c.cfg.ClientSecret.Reveal()}
		return fmt.Errorf("auth %s: %w", c.cfg.Name, &TokenError{
			Endpoint:    endpointLabel(c.cfg.TokenURL),
			Status:      status,
			Code:        clean(re.ErrorCode, 64, secrets),
			Description: clean(re.ErrorDescription, maxDescription, secrets),
		})
	}
	// Transport and parse errors of the oauth2 package quote neither the request nor the answer.
	return fmt.Errorf("auth %s: token request to %s: %w", c.cfg.Name, endpointLabel(c.cfg.TokenURL), err)
}

// lifetime reads expires_in from the answer, so expiry follows the injected clock rather than
// the wall clock the oauth2 package used.
func lifetime(tok *oauth2.Token) time.Duration {
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		if v > 0 {
			return time.Duration(v) * time.Second
		}
	case int64:
		if v > 0 {
			return time.Duration(v) * time.Second
		}
	case string:
		var s seconds
		if s.UnmarshalJSON([]byte(v)) == nil && s > 0 {
			return time.Duration(s) * time.Second
		}
	}
	if !tok.Expiry.IsZero() {
		return time.Until(tok.Expiry)
	}
	return defaultAccessLifetime
}

// cloneToken copies a token so callers cannot change the cache.
func cloneToken(t *oauth2.Token) *oauth2.Token {
	c := *t
	return &c
}
