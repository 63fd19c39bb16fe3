// Package ingrid declares the datasets of GRTgaz's INGRID shipper API and builds their jobs:
// one OAuth 2.0 client-credentials token source and one upstream client shared by every job,
// and one job per (contract code, dataset).
//
// INGRID publishes no reference of its wire format: the query parameters live in
// datasets.go and the answer envelope in decode.go, each in one place, so a real account can
// correct them there (docs/sources/ingrid.md lists every assumption).
package ingrid

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/upstream"
)

// Endpoints of the two INGRID environments, from the connection guide.
const (
	ProductionAPIBase  = "https://api.ingrid.grtgaz.com"
	ProductionTokenURL = "https://auth-api.offre.grtgaz.com/oauth2/token"
	StagingAPIBase     = "https://api.ingrid-stg.grtgaz.com"
	StagingTokenURL    = "https://auth-api.offre-stg.grtgaz.com/oauth2/token"
)

// DefaultTokenTimeout bounds one token request when Options.TokenTimeout is zero.
const DefaultTokenTimeout = 30 * time.Second

// ErrInvalidOptions marks an unusable Options; the message names the field.
var ErrInvalidOptions = errors.New("ingrid: invalid options")

// Options configure the INGRID source. Zero values take the production endpoints and the
// defaults of auth and upstream.
type Options struct {
	// OnStatus, if set, sees the HTTP status of every upstream attempt (metrics).
	OnStatus     func(code int)
	APIBase      string // ProductionAPIBase when empty
	TokenURL     string // ProductionTokenURL when empty
	ClientID     string
	ClientSecret secret.Value
	// AuthScheme is the Authorization scheme of data calls: "Bearer" (default), another
	// scheme name, or auth.SchemeNone ("none") for the bare token the guide shows.
	AuthScheme string
	// Contracts are the contract codes polled; each is a job partition.
	Contracts []string
	// Datasets enables datasets by name; empty enables all of them.
	Datasets []string
	// Limiter spends INGRID's quota on every data request, across all jobs; nil: no limit.
	Limiter *quota.Limiter
	Logger  *slog.Logger
	// Timeout bounds one data request attempt; TokenTimeout one token request.
	Timeout      time.Duration
	TokenTimeout time.Duration
	MaxBody      int64  // response size limit (upstream default when zero)
	UserAgent    string // upstream default when empty
	// TLSConfig sets private roots or client certificates for both hosts.
	TLSConfig *tls.Config
	// EarlyRenew renews access tokens this long before expiry (auth default when zero).
	EarlyRenew time.Duration
	// Clock drives token expiry and retry waits; the wall clock when nil.
	Clock quota.Clock
}

// Source is the INGRID upstream: its token source, its HTTP client and its jobs.
type Source struct {
	tokens *auth.ClientCredentials
	client *upstream.Client
	jobs   []*pollers.Job
}

// New checks opts and builds the token source, the upstream client and the jobs. It makes
// no request: the first token is fetched by the first poll.
func New(opts Options) (*Source, error) {
	if opts.APIBase == "" {
		opts.APIBase = ProductionAPIBase
	}
	if opts.TokenURL == "" {
		opts.TokenURL = ProductionTokenURL
	}
	if err := checkURL("TokenURL", opts.TokenURL); err != nil {
		return nil, err
	}
	if err := checkURL("APIBase", opts.APIBase); err != nil {
		return nil, err
	}
	if strings.TrimSpace(opts.ClientID) == "" {
		return nil, fmt.Errorf("%w: ClientID is empty", ErrInvalidOptions)
	}
	if opts.ClientSecret.IsZero() {
		return nil, fmt.Errorf("%w: ClientSecret is empty", ErrInvalidOptions)
	}
	contracts, err := checkContracts(opts.Contracts)
	if err != nil {
		return nil, err
	}
	datasets, err := Select(opts.Datasets)
	if err != nil {
		return nil, err
	}
	scheme := opts.AuthScheme
	switch {
	case scheme == "" || strings.EqualFold(scheme, "bearer"):
		scheme = ""
	case strings.EqualFold(scheme, auth.SchemeNone):
		scheme = auth.SchemeNone
	case strings.ContainsAny(scheme, " \t\r\n"):
		return nil, fmt.Errorf("%w: AuthScheme %q has white space", ErrInvalidOptions, scheme)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var clock auth.Clock
	if opts.Clock != nil {
		clock = opts.Clock.Now
	}
	tokenTransport := http.DefaultTransport.(*http.Transport).Clone()
	if opts.TLSConfig != nil {
		tokenTransport.TLSClientConfig = opts.TLSConfig.Clone()
	}
	tokenTimeout := opts.TokenTimeout
	if tokenTimeout <= 0 {
		tokenTimeout = DefaultTokenTimeout
	}
	tokens, err := auth.NewClientCredentials(auth.ClientCredentialsConfig{
		Name:         SourceName,
		TokenURL:     opts.TokenURL,
		ClientID:     opts.ClientID,
		ClientSecret: opts.ClientSecret,
		HTTPClient:   &http.Client{Transport: tokenTransport, Timeout: tokenTimeout},
		EarlyRenew:   opts.EarlyRenew,
		Clock:        clock,
		Logger:       logger,
	})
	if err != nil {
		return nil, fmt.Errorf("ingrid: %w", err)
	}
	client := upstream.New(upstream.Options{
		Name:     SourceName,
		OnStatus: opts.OnStatus,
		BaseURL:  opts.APIBase,
		Limiter:  opts.Limiter,
		Auth: func(base http.RoundTripper) http.RoundTripper {
			return &auth.Transport{Base: base, Source: tokens, Scheme: scheme}
		},
		UserAgent: opts.UserAgent,
		Timeout:   opts.Timeout,
		MaxBody:   opts.MaxBody,
		Logger:    logger.With("source", SourceName),
		Clock:     opts.Clock,
		TLSConfig: opts.TLSConfig,
	})
	s := &Source{tokens: tokens, client: client}
	for _, c := range contracts {
		for _, d := range datasets {
			s.jobs = append(s.jobs, &pollers.Job{
				Dataset:   d,
				Partition: pollers.Partition{ID: c},
				Fetcher:   client,
			})
		}
	}
	return s, nil
}

// Jobs returns one job per (contract, enabled dataset), contracts in the configured order
// and datasets in the guide's order. All jobs share one token source and one client.
func (s *Source) Jobs(context.Context) ([]*pollers.Job, error) {
	return slices.Clone(s.jobs), nil
}

// Health reports the token source's state (one client identity for every contract).
func (s *Source) Health() []auth.Health { return []auth.Health{s.tokens.Health()} }

// Select returns the datasets named in names, in the guide's order; empty names select all.
// An unknown name is an error that names it.
func Select(names []string) ([]*pollers.Dataset, error) {
	if len(names) == 0 {
		return slices.Clone(Datasets), nil
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		n = strings.TrimSpace(n)
		if Lookup(n) == nil {
			known := make([]string, len(Datasets))
			for i, d := range Datasets {
				known[i] = d.Name
			}
			return nil, fmt.Errorf("%w: unknown dataset %q (known: %s)", ErrInvalidOptions, n, strings.Join(known, ", "))
		}
		want[n] = true
	}
	var out []*pollers.Dataset
	for _, d := range Datasets {
		if want[d.Name] {
			out = append(out, d)
		}
	}
	return out, nil
}

// checkContracts trims the contract codes and rejects an empty list, empty codes and
// duplicates. Codes differing only in case are duplicates: subject tokens, job ids and
// cursors are lower-case.
func checkContracts(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%w: Contracts is empty (set at least one contract code)", ErrInvalidOptions)
	}
	out := make([]string, 0, len(in))
	for i, c := range in {
		c = strings.TrimSpace(c)
		if c == "" {
			return nil, fmt.Errorf("%w: Contracts[%d] is empty", ErrInvalidOptions, i)
		}
		if slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, c) }) {
			return nil, fmt.Errorf("%w: contract %q listed twice", ErrInvalidOptions, c)
		}
		out = append(out, c)
	}
	return out, nil
}

// checkURL accepts https URLs, and http ones on a loopback host (tests, the sandbox).
func checkURL(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return fmt.Errorf("%w: %s is not an absolute URL without credentials", ErrInvalidOptions, field)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("%w: %s: plain http is allowed for loopback hosts only", ErrInvalidOptions, field)
	}
	return fmt.Errorf("%w: %s: scheme %q, want https", ErrInvalidOptions, field, u.Scheme)
}
