// Package grex declares the Grexel G-REX registry datasets (certificate bundles, transactions
// and account summaries per account) and builds their jobs.
//
// G-REX sits behind Azure AD B2C: an operator logs in once with `connector login grex` (Login:
// authorization code with PKCE, multi-factor by a person), the refresh token is saved encrypted
// in the token store, and from then on auth.Rotating renews unattended, saving each rotated
// refresh token before using it. Every request of every G-REX job goes through one shared
// quota.Limiter (100 per minute and 500 per hour), carries the headers the registry's firewall
// requires, and is a GET: the registry counts write calls and blocks violators.
package grex

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/upstream"
)

// Defaults of Options.
const (
	// DefaultRefreshLifetime is assumed when the token answer has no refresh_token_expires_in
	// (B2C single-page-app refresh tokens live 24 h).
	DefaultRefreshLifetime = 24 * time.Hour
	// DefaultExpiryWarning is how long before the refresh token's expiry Health turns
	// "expiring", so an operator has time to log in again.
	DefaultExpiryWarning = 6 * time.Hour
	// DefaultUserAgent is sent when Options.UserAgent is empty (the registry requires one).
	DefaultUserAgent = "gridstream-connector (+https://github.com/gridstream/gridstream)"
)

// Fair-use limits of the registry, the windows of the Limiter every G-REX job shares.
var FairUse = []quota.Window{{Limit: 100, Per: time.Minute}, {Limit: 500, Per: time.Hour}}

// Options configure the G-REX source. They are plain values; cmd/connector maps its
// configuration to them.
type Options struct {
	// Timeout bounds one request attempt, body included (the upstream default when zero).
	Timeout time.Duration
	// OnStatus, if set, sees the HTTP status of every upstream attempt (metrics).
	OnStatus func(code int)
	// APIBase is the registry API host, e.g. https://eexfranceapi.grexel.com.
	APIBase string
	// AuthorizeURL and TokenURL are the B2C endpoints,
	// https://{dir}.b2clogin.com/{dir}.onmicrosoft.com/{policy}/oauth2/v2.0/{authorize,token}.
	AuthorizeURL, TokenURL string
	// ClientID is the registry's public client (app) id; RedirectURI its registered redirect.
	ClientID, RedirectURI string
	// Scope is space-separated; when empty it is built from the directory in TokenURL:
	// https://{dir}.onmicrosoft.com/{ClientID}/user_impersonation openid offline_access.
	Scope string
	// Accounts are the account numbers to watch (one partition each).
	Accounts []string
	// Datasets enables datasets by name; every dataset when empty.
	Datasets []string
	// PageSize is the $top of keyset pages, 1..100 (100 when zero).
	PageSize int
	// TokenStore keeps the encrypted refresh token; StoreKey is its key (StoreKey(ClientID)
	// when empty). Login writes it, the source reads and rotates it.
	TokenStore auth.Store
	StoreKey   string
	// Limiter is shared by every G-REX job (and replica): build it with FairUse windows.
	Limiter *quota.Limiter
	Logger  *slog.Logger
	// Clock drives token expiry and retries (the wall clock when nil). A quota.FakeClock
	// here, in the Limiter and in the sandbox runs everything on one simulated time.
	Clock quota.Clock
	// UserAgent is sent on every request (DefaultUserAgent when empty).
	UserAgent string
	// HTTPClient sends token requests (http.DefaultClient when nil).
	HTTPClient *http.Client
	// AllowPlainHTTP permits an http APIBase on a non-loopback host (a sandbox in another
	// container); never for the real registry.
	AllowPlainHTTP bool
	// RefreshLifetime is assumed when a token answer does not state one (24 h when zero);
	// ExpiryWarning is the Health "expiring" window (6 h when zero).
	RefreshLifetime, ExpiryWarning time.Duration
}

// StoreKey is the token store key of a G-REX client id's login.
func StoreKey(clientID string) string { return auth.StoreKey(SourceName, clientID) }

// Source is the configured G-REX source: one identity, one HTTP client, one job per
// (dataset, account).
type Source struct {
	opts   Options
	tokens *auth.Rotating
	client *upstream.Client
	log    *slog.Logger
}

// New checks opts and builds the source; it makes no request until a job runs.
func New(opts Options) (*Source, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	if opts.APIBase == "" {
		return nil, errors.New("grex: APIBase is required")
	}
	if len(opts.Accounts) == 0 {
		return nil, errors.New("grex: at least one account number is required")
	}
	for _, a := range opts.Accounts {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, "/?#%") {
			return nil, fmt.Errorf("grex: account number %q is not usable in a path", a)
		}
	}
	if opts.Limiter == nil {
		return nil, errors.New("grex: a shared Limiter is required (fair use: 100/min and 500/h)")
	}
	for _, name := range opts.Datasets {
		if !slices.ContainsFunc(Datasets, func(d *pollers.Dataset) bool { return d.Name == name }) {
			return nil, fmt.Errorf("grex: unknown dataset %q", name)
		}
	}
	if opts.PageSize < 0 || opts.PageSize > MaxPageSize {
		return nil, fmt.Errorf("grex: PageSize %d: must be 1..%d", opts.PageSize, MaxPageSize)
	}
	tokens, err := auth.NewRotating(opts.rotating())
	if err != nil {
		return nil, fmt.Errorf("grex: %w", err)
	}
	client := upstream.New(upstream.Options{
		Name:           SourceName,
		OnStatus:       opts.OnStatus,
		Timeout:        opts.Timeout,
		BaseURL:        opts.APIBase,
		AllowPlainHTTP: opts.AllowPlainHTTP,
		Limiter:        opts.Limiter,
		UserAgent:      opts.UserAgent,
		// The registry's firewall answers 403 without them (Host is always sent; a GET has
		// no body, so no Content-Length).
		Header: http.Header{"Accept": {"application/json"}, "Content-Type": {"application/json"}},
		Clock:  opts.Clock,
		Logger: opts.Logger,
		Auth: func(next http.RoundTripper) http.RoundTripper {
			return &auth.Transport{Base: next, Source: tokens}
		},
	})
	return &Source{opts: opts, tokens: tokens, client: client, log: opts.Logger.With("source", SourceName)}, nil
}

// normalize fills defaults and checks the auth options Login and New share.
func (o *Options) normalize() error {
	if o.TokenURL == "" || o.ClientID == "" || o.RedirectURI == "" {
		return errors.New("grex: TokenURL, ClientID and RedirectURI are required")
	}
	if o.TokenStore == nil {
		return errors.New("grex: a TokenStore is required")
	}
	if o.Scope == "" {
		dir, err := directory(o.TokenURL)
		if err != nil {
			return err
		}
		o.Scope = "https://" + dir + "/" + o.ClientID + "/user_impersonation openid offline_access"
	}
	if !slices.Contains(strings.Fields(o.Scope), "offline_access") {
		return errors.New("grex: Scope must contain offline_access, or no refresh token is issued")
	}
	if o.StoreKey == "" {
		o.StoreKey = StoreKey(o.ClientID)
	}
	if o.PageSize == 0 {
		o.PageSize = MaxPageSize
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.RefreshLifetime <= 0 {
		o.RefreshLifetime = DefaultRefreshLifetime
	}
	if o.ExpiryWarning <= 0 {
		o.ExpiryWarning = DefaultExpiryWarning
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = quota.RealClock{}
	}
	return nil
}

// directory finds "{dir}.onmicrosoft.com" in a B2C endpoint's path.
func directory(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", errors.New("grex: TokenURL does not parse")
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if strings.HasSuffix(seg, ".onmicrosoft.com") {
			return seg, nil
		}
	}
	return "", errors.New("grex: no {dir}.onmicrosoft.com in TokenURL: set Scope")
}

// rotating is the token configuration of both the source and the login.
func (o *Options) rotating() auth.RotatingConfig {
	return auth.RotatingConfig{
		Name:            SourceName,
		Subject:         o.ClientID,
		TokenURL:        o.TokenURL,
		ClientID:        o.ClientID,
		Scopes:          strings.Fields(o.Scope),
		RedirectURL:     o.RedirectURI,
		HTTPClient:      o.HTTPClient,
		Store:           o.TokenStore,
		Key:             o.StoreKey,
		RefreshLifetime: o.RefreshLifetime,
		ExpiryWarning:   o.ExpiryWarning,
		Clock:           o.Clock.Now,
		Logger:          o.Logger,
	}
}

// Jobs returns one job per enabled dataset and account, all sharing one client (and so one
// token source and one Limiter).
func (s *Source) Jobs(context.Context) ([]*pollers.Job, error) {
	var jobs []*pollers.Job
	for _, ds := range Datasets {
		if len(s.opts.Datasets) > 0 && !slices.Contains(s.opts.Datasets, ds.Name) {
			continue
		}
		if ds.PageSize > 0 && ds.PageSize != s.opts.PageSize {
			c := *ds
			c.PageSize = s.opts.PageSize
			ds = &c
		}
		for _, a := range s.opts.Accounts {
			jobs = append(jobs, &pollers.Job{
				Dataset:   ds,
				Partition: pollers.Partition{ID: a, Params: map[string]string{paramAccount: a}},
				Fetcher:   s.client,
			})
		}
	}
	return jobs, nil
}

// Health reports the login: state, access expiry and the refresh token's expiry (when a new
// interactive login will be needed).
func (s *Source) Health() []auth.Health { return []auth.Health{s.tokens.Health()} }
