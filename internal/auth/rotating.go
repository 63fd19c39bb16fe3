package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/gridstream/gridstream/internal/secret"
)

// Defaults of RotatingConfig.
const (
	defaultLeaseDuration = 30 * time.Second
	defaultLeasePoll     = 50 * time.Millisecond
	maxConflicts         = 20
)

// RotatingConfig configures a refresh-token rotation source (NET2GRID, G-REX) and the logins
// that seed its store.
type RotatingConfig struct {
	Name    string // upstream name for Health and logs, e.g. "net2grid"
	Subject string // non-secret label of the identity for Health (SubjectOf(user)); Key when empty

	TokenURL     string
	ClientID     string
	ClientSecret secret.Value // sent in the form when set (NET2GRID)
	Scopes       []string     // sent space-joined as "scope" when set (G-REX)
	RedirectURL  string       // sent as "redirect_uri" when set (G-REX)
	ExtraParams  url.Values   // further form fields for every token request
	HTTPClient   *http.Client // for token requests; http.DefaultClient when nil

	Store Store  // where the refresh token lives; shared by every replica
	Key   string // store key, from StoreKey

	EarlyRenew time.Duration // renew access tokens this long before expiry; 2 min when zero
	// RefreshLifetime is the refresh token lifetime assumed when an answer has no
	// refresh_token_expires_in (30 days NET2GRID, 24 h G-REX); zero means unknown.
	RefreshLifetime time.Duration
	// FixedRefreshExpiry keeps the previous refresh expiry when a rotation does not state one:
	// for policies where rotation does not extend the login (B2C single-page apps).
	FixedRefreshExpiry bool
	// ExpiryWarning is the window before the refresh expiry in which Health says "expiring";
	// RefreshLifetime/4 when zero.
	ExpiryWarning time.Duration
	// LeaseDuration bounds how long one source may hold the refresh token while it refreshes;
	// 30 s when zero. LeasePoll is the (real) time between looks at the store while another
	// source holds it; 50 ms when zero.
	LeaseDuration time.Duration
	LeasePoll     time.Duration

	Clock  Clock        // time.Now when nil
	Logger *slog.Logger // slog.DiscardHandler when nil
}

func (c *RotatingConfig) defaults() {
	if c.Subject == "" {
		c.Subject = c.Key
	}
	if c.EarlyRenew <= 0 {
		c.EarlyRenew = defaultEarlyRenew
	}
	if c.ExpiryWarning <= 0 {
		c.ExpiryWarning = c.RefreshLifetime / 4
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = defaultLeaseDuration
	}
	if c.LeasePoll <= 0 {
		c.LeasePoll = defaultLeasePoll
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *RotatingConfig) endpoint() tokenEndpoint {
	return tokenEndpoint{URL: c.TokenURL, Client: c.HTTPClient}
}

// form builds a token request: the grant's own fields, then client id and secret, scope,
// redirect URI and the extra parameters.
func (c *RotatingConfig) form(grant url.Values) url.Values {
	f := url.Values{}
	for k, v := range c.ExtraParams {
		f[k] = append([]string(nil), v...)
	}
	f.Set("client_id", c.ClientID)
	if !c.ClientSecret.IsZero() {
		f.Set("client_secret", c.ClientSecret.Reveal())
	}
	if len(c.Scopes) > 0 {
		f.Set("scope", strings.Join(c.Scopes, " "))
	}
	if c.RedirectURL != "" {
		f.Set("redirect_uri", c.RedirectURL)
	}
	for k, v := range grant {
		f[k] = v
	}
	return f
}

// storedFrom turns a token answer into what is saved: a missing refresh token keeps prev's, a
// missing refresh lifetime falls back to the configured one.
func (c *RotatingConfig) storedFrom(ans *tokenAnswer, prev Stored, now time.Time) Stored {
	st := Stored{
		RefreshToken:  ans.RefreshToken,
		RefreshExpiry: prev.RefreshExpiry,
		AccessToken:   ans.AccessToken,
		AccessExpiry:  now.Add(defaultAccessLifetime),
		TokenType:     ans.TokenType,
		UpdatedAt:     now,
	}
	if ans.ExpiresIn > 0 {
		st.AccessExpiry = now.Add(ans.ExpiresIn)
	}
	switch {
	case ans.RefreshExpiresIn > 0:
		st.RefreshExpiry = now.Add(ans.RefreshExpiresIn)
	case ans.RefreshToken.IsZero():
		// The old refresh token stays, and so does its expiry.
	case c.FixedRefreshExpiry && !prev.RefreshExpiry.IsZero():
	case c.RefreshLifetime > 0:
		st.RefreshExpiry = now.Add(c.RefreshLifetime)
	default:
		st.RefreshExpiry = time.Time{}
	}
	if st.RefreshToken.IsZero() {
		st.RefreshToken = prev.RefreshToken
	}
	return st
}

// Rotating is a Source that renews access tokens with a rotating refresh token kept in a Store.
//
// Replicas sharing a store never spend one refresh token twice: before refreshing, a source
// takes a lease on the stored tokens with compare-and-swap; the others wait for its result and
// use that. The rotated refresh token is saved, again with compare-and-swap, before the new
// access token is handed out. The access token is stored too, so another replica or a restart
// reuses it instead of refreshing.
type Rotating struct {
	cfg    RotatingConfig
	te     tokenEndpoint
	logger *slog.Logger
	owner  string

	refreshMu sync.Mutex // one refresh at a time in this process

	mu            sync.Mutex
	access        secret.Value
	accessExpiry  time.Time
	tokenType     string
	bad           string // access token the upstream answered 401 to
	refreshExpiry time.Time
	base          State  // ok, error or login-required; "expiring" is derived
	logged        State  // last state logged, for one log line per transition
	lastErr       string // safe text
	rejectedRev   uint64 // store revision whose refresh token was rejected
	pending       *pendingSave
}

// pendingSave is a rotation the upstream completed but the store has not yet recorded.
type pendingSave struct {
	st  Stored
	rev uint64
}

// NewRotating returns a rotation source over cfg.Store; it reads the store when first asked.
func NewRotating(cfg RotatingConfig) (*Rotating, error) {
	if cfg.TokenURL == "" || cfg.ClientID == "" || cfg.Store == nil || cfg.Key == "" {
		return nil, errors.New("auth: rotating source needs TokenURL, ClientID, Store and Key")
	}
	cfg.defaults()
	return &Rotating{
		cfg:    cfg,
		te:     cfg.endpoint(),
		logger: cfg.Logger.With("source", cfg.Name, "subject", cfg.Subject),
		owner:  rand.Text(),
		base:   StateOK,
		logged: StateOK,
	}, nil
}

// Token returns a valid access token: the cached one, one another replica stored, or a new one
// from a refresh.
func (r *Rotating) Token(ctx context.Context) (*oauth2.Token, error) {
	if tok := r.cached(); tok != nil {
		return tok, nil
	}
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if tok := r.cached(); tok != nil {
		return tok, nil
	}
	tok, err := r.obtain(ctx)
	if err != nil {
		err = fmt.Errorf("auth %s %s: %w", r.cfg.Name, r.cfg.Subject, err)
		r.mu.Lock()
		r.lastErr = err.Error()
		if r.base != StateLoginRequired {
			r.base = StateError
		}
		r.noteState(r.cfg.Clock.now())
		r.mu.Unlock()
		return nil, err
	}
	return tok, nil
}

// cached returns the in-memory access token while it is fresh.
func (r *Rotating) cached() *oauth2.Token {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Clock.now()
	r.noteState(now)
	if r.access.IsZero() || !now.Before(r.accessExpiry.Add(-r.cfg.EarlyRenew)) {
		return nil
	}
	return &oauth2.Token{AccessToken: r.access.Reveal(), TokenType: r.tokenType, Expiry: r.accessExpiry}
}

// Invalidate drops the cached access token; a stored copy of it is not reused either.
func (r *Rotating) Invalidate() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.access.IsZero() {
		r.bad = r.access.Reveal()
	}
	r.access = secret.Value{}
}

// Health reports the source's state.
func (r *Rotating) Health() Health {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.cfg.Clock.now()
	h := Health{
		Source: r.cfg.Name, Subject: r.cfg.Subject, State: r.noteState(now),
		RefreshExpiry: r.refreshExpiry, LastError: r.lastErr,
	}
	if !r.access.IsZero() {
		h.AccessExpiry = r.accessExpiry
	}
	return h
}

// noteState derives the current state and logs each transition once. Callers hold r.mu.
func (r *Rotating) noteState(now time.Time) State {
	s := r.base
	if s == StateOK && !r.refreshExpiry.IsZero() && !now.Before(r.refreshExpiry.Add(-r.cfg.ExpiryWarning)) {
		s = StateExpiring
	}
	if s == r.logged {
		return s
	}
	r.logged = s
	switch s {
	case StateExpiring:
		r.logger.Error("refresh token expires soon: a new login will be needed",
			"state", s, "refresh_expiry", r.refreshExpiry)
	case StateLoginRequired:
		r.logger.Error("refresh token missing or rejected: a new login is needed", "state", s, "error", r.lastErr)
	case StateError:
		r.logger.Error("token renewal failing", "state", s, "error", r.lastErr)
	default:
		r.logger.Info("token renewal healthy", "state", s, "refresh_expiry", r.refreshExpiry)
	}
	return s
}

// adopt makes st the current tokens and returns its access token.
func (r *Rotating) adopt(st Stored) *oauth2.Token {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.access, r.accessExpiry, r.tokenType = st.AccessToken, st.AccessExpiry, st.TokenType
	r.refreshExpiry = st.RefreshExpiry
	r.base, r.lastErr = StateOK, ""
	r.noteState(r.cfg.Clock.now())
	return &oauth2.Token{AccessToken: st.AccessToken.Reveal(), TokenType: st.TokenType, Expiry: st.AccessExpiry}
}

// usable reports whether st holds an access token fresh enough to hand out.
func (r *Rotating) usable(st Stored, now time.Time) bool {
	if st.AccessToken.IsZero() || !now.Before(st.AccessExpiry.Add(-r.cfg.EarlyRenew)) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return st.AccessToken.Reveal() != r.bad
}

// loginRequired records that a person must log in and returns the error saying so.
func (r *Rotating) loginRequired(rev uint64, refreshExpiry time.Time, why error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.base = StateLoginRequired
	r.rejectedRev = rev
	r.refreshExpiry = refreshExpiry
	r.access = secret.Value{}
	return fmt.Errorf("%w: %w", ErrLoginRequired, why)
}

// obtain finds or makes a fresh access token. Callers hold refreshMu.
func (r *Rotating) obtain(ctx context.Context) (*oauth2.Token, error) {
	store, key := r.cfg.Store, r.cfg.Key
	conflicts := 0
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if conflicts > maxConflicts {
			return nil, fmt.Errorf("token store kept changing under %d attempts: %w", conflicts, ErrConflict)
		}
		if p := r.pending; p != nil {
			rev, err := store.Save(ctx, key, p.st, p.rev)
			switch {
			case err == nil:
				r.pending = nil
				r.logger.Info("saved rotated refresh token after an earlier failure", "revision", rev)
				return r.adopt(p.st), nil
			case errors.Is(err, ErrConflict):
				r.pending = nil
				r.logger.Error("rotated refresh token could not be saved and another writer replaced it")
			default:
				return nil, fmt.Errorf("save rotated tokens (kept in memory, retried on next call): %w", err)
			}
		}

		st, rev, err := store.Load(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return nil, r.loginRequired(0, time.Time{}, errors.New("no refresh token stored"))
		}
		if err != nil {
			return nil, err
		}
		now := r.cfg.Clock.now()
		if r.usable(st, now) {
			return r.adopt(st), nil
		}
		if st.RefreshToken.IsZero() {
			return nil, r.loginRequired(rev, st.RefreshExpiry, errors.New("no refresh token stored"))
		}
		r.mu.Lock()
		rejected := r.base == StateLoginRequired && r.rejectedRev == rev
		r.mu.Unlock()
		if rejected {
			return nil, fmt.Errorf("%w: the stored refresh token was rejected; waiting for a new login", ErrLoginRequired)
		}
		if st.LeaseOwner != "" && st.LeaseOwner != r.owner && now.Before(st.LeaseUntil) {
			if err := wait(ctx, r.cfg.LeasePoll); err != nil {
				return nil, fmt.Errorf("waiting for another replica's refresh: %w", err)
			}
			continue
		}

		leased := st
		leased.LeaseOwner, leased.LeaseUntil = r.owner, now.Add(r.cfg.LeaseDuration)
		leaseRev, err := store.Save(ctx, key, leased, rev)
		if errors.Is(err, ErrConflict) {
			conflicts++
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lease stored tokens: %w", err)
		}

		ans, err := r.te.post(ctx, r.cfg.form(url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {st.RefreshToken.Reveal()},
		}))
		if err != nil {
			releaseRev := r.release(ctx, st, leaseRev)
			var te *TokenError
			if (errors.As(err, &te) && te.rejectsGrant()) || errors.Is(err, ErrLoginNeedsPerson) {
				return nil, r.loginRequired(releaseRev, st.RefreshExpiry, err)
			}
			return nil, err
		}
		next := r.cfg.storedFrom(ans, st, r.cfg.Clock.now())
		newRev, err := store.Save(ctx, key, next, leaseRev)
		if errors.Is(err, ErrConflict) {
			// Our lease lapsed and another writer (a new login, say) replaced the tokens: use theirs.
			r.logger.Warn("stored tokens replaced during refresh; using the stored ones")
			conflicts++
			continue
		}
		if err != nil {
			r.pending = &pendingSave{st: next, rev: leaseRev}
			return nil, fmt.Errorf("save rotated tokens (kept in memory, retried on next call): %w", err)
		}
		rotated := !ans.RefreshToken.IsZero()
		r.logger.Debug("access token renewed", "rotated", rotated, "revision", newRev,
			"access_expiry", next.AccessExpiry, "refresh_expiry", next.RefreshExpiry)
		return r.adopt(next), nil
	}
}

// release drops the lease after a failed refresh so other replicas need not wait for it to
// lapse. It returns the revision the store is at afterwards as far as this source knows.
func (r *Rotating) release(ctx context.Context, st Stored, leaseRev uint64) uint64 {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	st.LeaseOwner, st.LeaseUntil = "", time.Time{}
	rev, err := r.cfg.Store.Save(ctx, r.cfg.Key, st, leaseRev)
	if err != nil {
		r.logger.Warn("could not release refresh lease; it lapses on its own", "error", err)
		return leaseRev
	}
	return rev
}

// wait pauses for d of real time or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
