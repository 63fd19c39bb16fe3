// Package net2grid declares the NET2GRID CE-API datasets and builds their jobs: one readings
// job per registered end user, each with its own rotating refresh token.
//
// End users are the scaling axis (tens of thousands per label partner). Each user has a
// pseudonymous id (UserID), an entry in the user Registry (JetStream KV, no address and no
// secret), a refresh token in the shared, encrypted auth token store, one auth.Rotating source
// and one upstream client; every user's client shares one http.Transport and one quota
// limiter. A user whose refresh token is rejected turns login-required in Health and only that
// user's job fails. The password is used once, by Login, and never kept.
package net2grid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/upstream"
)

// RefreshLifetime is the documented lifetime of a NET2GRID refresh token.
const RefreshLifetime = 30 * 24 * time.Hour

// Users is what the Source needs of the user registry; *Registry implements it.
type Users interface {
	List(ctx context.Context) ([]User, error)
	Get(ctx context.Context, id string) (User, error)
	Put(ctx context.Context, u User) error
}

// Options configure the NET2GRID source. APIBase, ClientID, ClientSecret, Users and TokenStore
// are required.
type Options struct {
	// Timeout bounds one request attempt, body included (the upstream default when zero).
	Timeout time.Duration
	// OnStatus, if set, sees the HTTP status of every upstream attempt (metrics).
	OnStatus func(code int)
	// APIBase is the label partner's CE-API base URL, without "/v2".
	APIBase string
	// TokenURL defaults to APIBase + "/v2/token".
	TokenURL     string
	ClientID     string
	ClientSecret secret.Value
	// AllowPlainHTTP permits an http APIBase on a non-loopback host (a sandbox in another
	// container), never for the real API.
	AllowPlainHTTP bool

	Users      Users
	TokenStore auth.Store
	// Limiter is the NET2GRID quota, shared by every user; nil means none.
	Limiter *quota.Limiter
	// Transport carries every user's requests and token requests; one is made when nil.
	Transport *http.Transport
	// RefreshLifetime is assumed for refresh tokens (RefreshLifetime when zero).
	RefreshLifetime time.Duration
	// Discovery bounds concurrent installation look-ups in Jobs (8 when zero).
	Discovery int

	UserAgent  string
	MaxRetries int                                              // upstream retries (upstream default when zero)
	Sleep      func(ctx context.Context, d time.Duration) error // retry pauses; tests skip them
	Clock      quota.Clock                                      // real time when nil
	Logger     *slog.Logger                                     // discards when nil
}

func (o *Options) defaults() error {
	if o.APIBase == "" || o.ClientID == "" || o.ClientSecret.IsZero() {
		return errors.New("net2grid: APIBase, ClientID and ClientSecret are required")
	}
	o.APIBase = strings.TrimRight(o.APIBase, "/")
	if o.TokenURL == "" {
		o.TokenURL = o.APIBase + "/v2/token"
	}
	if o.TokenStore == nil {
		return errors.New("net2grid: a token store is required")
	}
	if o.RefreshLifetime <= 0 {
		o.RefreshLifetime = RefreshLifetime
	}
	if o.Discovery <= 0 {
		o.Discovery = 8
	}
	if o.Clock == nil {
		o.Clock = quota.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64 // every user talks to the same host
		o.Transport = tr
	}
	return nil
}

// Source builds the NET2GRID jobs and reports the token health of every user.
type Source struct {
	opts        Options
	log         *slog.Logger
	tokenClient *http.Client

	mu    sync.Mutex
	users map[string]*userState
}

// userState is what the Source keeps per user between calls to Jobs.
type userState struct {
	tokens *auth.Rotating
	client *upstream.Client
	job    *pollers.Job
}

// New returns the source; it contacts nothing until Jobs.
func New(opts Options) (*Source, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	if opts.Users == nil {
		return nil, errors.New("net2grid: a user registry is required")
	}
	return &Source{
		opts:        opts,
		log:         opts.Logger.With("source", Name),
		tokenClient: tokenClient(opts),
		users:       map[string]*userState{},
	}, nil
}

func tokenClient(o Options) *http.Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = upstream.DefaultTimeout
	}
	return &http.Client{Transport: o.Transport, Timeout: timeout}
}

// storeKey is the token store key of a user: "net2grid.<hash of the user id>".
func storeKey(id string) string { return auth.StoreKey(Name, id) }

// rotatingConfig is the auth configuration of user id.
func rotatingConfig(o Options, hc *http.Client, id string) auth.RotatingConfig {
	return auth.RotatingConfig{
		Name: Name, Subject: id,
		TokenURL: o.TokenURL, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		HTTPClient: hc, Store: o.TokenStore, Key: storeKey(id),
		RefreshLifetime: o.RefreshLifetime,
		Clock:           o.Clock.Now,
		Logger:          o.Logger,
	}
}

// newUser builds the token source and upstream client of user id.
func newUser(o Options, hc *http.Client, id string) (*userState, error) {
	tokens, err := auth.NewRotating(rotatingConfig(o, hc, id))
	if err != nil {
		return nil, fmt.Errorf("net2grid user %s: %w", id, err)
	}
	shared := o.Transport
	client := upstream.New(upstream.Options{
		Name:           Name,
		OnStatus:       o.OnStatus,
		Timeout:        o.Timeout,
		BaseURL:        o.APIBase + "/v2",
		AllowPlainHTTP: o.AllowPlainHTTP,
		Limiter:        o.Limiter,
		// The per-client base transport is replaced by the shared one, so ten thousand users
		// keep one connection pool.
		Auth: func(http.RoundTripper) http.RoundTripper {
			return &auth.Transport{Base: shared, Source: tokens}
		},
		UserAgent:  o.UserAgent,
		MaxRetries: o.MaxRetries,
		Sleep:      o.Sleep,
		Clock:      o.Clock,
		Logger:     o.Logger.With("source", Name, "user", id),
	})
	return &userState{tokens: tokens, client: client}, nil
}

// Jobs returns one readings job per registered user. A user without known installations is
// looked up first (and the registry updated); a user whose look-up fails is left out of this
// round, logged, and visible in Health.
func (s *Source) Jobs(ctx context.Context) ([]*pollers.Job, error) {
	list, err := s.opts.Users.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("net2grid jobs: %w", err)
	}
	states := make([]*userState, len(list))
	s.mu.Lock()
	keep := make(map[string]*userState, len(list))
	for i, u := range list {
		st := s.users[u.ID]
		if st == nil {
			if st, err = newUser(s.opts, s.tokenClient, u.ID); err != nil {
				s.mu.Unlock()
				return nil, err
			}
		}
		keep[u.ID], states[i] = st, st
	}
	s.users = keep // removed users are forgotten
	s.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Discovery)
	for i := range list {
		if len(list[i].Installations) > 0 {
			continue
		}
		g.Go(func() error {
			insts, err := discover(gctx, states[i].client, s.log)
			if err != nil {
				s.log.Warn("installation look-up failed; user skipped this round", "user", list[i].ID, "error", err)
				return nil
			}
			list[i].Installations = insts
			if err := s.opts.Users.Put(gctx, list[i]); err != nil {
				s.log.Warn("could not record installations", "user", list[i].ID, "error", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	jobs := make([]*pollers.Job, 0, len(list))
	for i, u := range list {
		if len(u.Installations) == 0 {
			continue
		}
		st := states[i]
		part := partition(u)
		if st.job == nil || !samePartition(st.job.Partition, part) {
			st.job = &pollers.Job{Dataset: Readings, Partition: part, Fetcher: readingsFetcher{api: st.client}}
		}
		jobs = append(jobs, st.job)
	}
	return jobs, nil
}

// partition is the readings partition of u: its id, primary installation and targets.
func partition(u User) pollers.Partition {
	primary := u.Installations[0].ID
	for _, in := range u.Installations {
		if in.Primary {
			primary = in.ID
			break
		}
	}
	return pollers.Partition{ID: u.ID, Params: map[string]string{
		ParamInstallation: primary,
		ParamTargets:      targetsParam(u.Installations),
	}}
}

func samePartition(a, b pollers.Partition) bool {
	return a.ID == b.ID && a.Params[ParamInstallation] == b.Params[ParamInstallation] &&
		a.Params[ParamTargets] == b.Params[ParamTargets]
}

// Health reports the token state of every user polled, ordered by user id.
func (s *Source) Health() []auth.Health {
	s.mu.Lock()
	states := make([]*userState, 0, len(s.users))
	for _, st := range s.users {
		states = append(states, st)
	}
	s.mu.Unlock()
	out := make([]auth.Health, len(states))
	for i, st := range states {
		out[i] = st.tokens.Health()
	}
	slices.SortFunc(out, func(a, b auth.Health) int { return strings.Compare(a.Subject, b.Subject) })
	return out
}

// Login is the operator's password bootstrap for one end user: a password grant once, the
// refresh token saved encrypted in the token store (replacing a rejected one), the user's
// installations looked up and the user recorded in the registry. The password is not kept;
// the caller should drop it too. A multi-factor challenge gives auth.ErrLoginNeedsPerson.
func Login(ctx context.Context, opts Options, email string, password secret.Value) (User, error) {
	if err := opts.defaults(); err != nil {
		return User{}, err
	}
	if opts.Users == nil {
		return User{}, errors.New("net2grid login: a user registry is required")
	}
	if err := checkEmail(email); err != nil {
		return User{}, err
	}
	id := UserID(email)
	hc := tokenClient(opts)
	if err := auth.BootstrapPassword(ctx, rotatingConfig(opts, hc, id), strings.TrimSpace(email), password,
		opts.TokenStore, storeKey(id)); err != nil {
		return User{}, fmt.Errorf("net2grid login %s: %w", id, err)
	}
	u, err := opts.Users.Get(ctx, id)
	if errors.Is(err, ErrUnknownUser) {
		u, err = User{ID: id, AddedAt: opts.Clock.Now().UTC()}, nil
	}
	if err != nil {
		return User{}, fmt.Errorf("net2grid login %s: %w", id, err)
	}
	u.LoginAt = opts.Clock.Now().UTC()
	st, err := newUser(opts, hc, id)
	if err != nil {
		return User{}, err
	}
	if insts, err := discover(ctx, st.client, opts.Logger); err != nil {
		opts.Logger.Warn("installation look-up after login failed; retried when jobs are built",
			"source", Name, "user", id, "error", err)
	} else {
		u.Installations = insts
	}
	if err := opts.Users.Put(ctx, u); err != nil {
		return User{}, fmt.Errorf("net2grid login %s: refresh token saved, registry not updated: %w", id, err)
	}
	return u, nil
}

// ImportResult is the outcome for one line of a user file.
type ImportResult struct {
	ID       string
	LoggedIn bool  // a password was given and the login succeeded
	Err      error // nil on success
}

// Import registers every entry: with a password it logs the user in (Login), without one it
// only adds the user to the registry (a login follows later). It goes on after a failure.
func Import(ctx context.Context, opts Options, reg *Registry, entries []UserEntry) []ImportResult {
	out := make([]ImportResult, len(entries))
	for i, e := range entries {
		out[i].ID = UserID(e.Email)
		if e.Password.IsZero() {
			_, out[i].Err = reg.Add(ctx, e.Email)
			continue
		}
		o := opts
		if o.Users == nil {
			o.Users = reg
		}
		_, out[i].Err = Login(ctx, o, e.Email, e.Password)
		out[i].LoggedIn = out[i].Err == nil
	}
	return out
}

// installationJSON is an installation as the CE-API describes it.
type installationJSON struct {
	ID         json.RawMessage `json:"id"`
	Primary    bool            `json:"primary"`
	Resolution string          `json:"resolution"`
	Metrics    []string        `json:"metrics"`
}

var (
	installationIDRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)
	metricRE         = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
)

// discover reads a user's installations: /installations, or /primary-installation when the
// list is not served. Installations whose id could break a request are left out and logged.
func discover(ctx context.Context, api pollers.Fetcher, log *slog.Logger) ([]Installation, error) {
	var raw []installationJSON
	body, err := api.Get(ctx, "/installations", nil)
	var se *upstream.StatusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusNotFound:
		if body, err = api.Get(ctx, "/primary-installation", nil); err != nil {
			return nil, fmt.Errorf("primary installation: %w", err)
		}
		var one installationJSON
		if err := decodeEnvelope(body, &one); err != nil {
			return nil, fmt.Errorf("primary installation: %w", err)
		}
		one.Primary = true
		raw = []installationJSON{one}
	case err != nil:
		return nil, fmt.Errorf("installations: %w", err)
	default:
		var list struct {
			Installations []installationJSON `json:"installations"`
		}
		if err := decodeEnvelope(body, &list); err != nil {
			return nil, fmt.Errorf("installations: %w", err)
		}
		raw = list.Installations
	}
	var out []Installation
	for _, r := range raw {
		id := strings.Trim(string(r.ID), `"`) // ids may be numbers or strings
		if !installationIDRE.MatchString(id) {
			log.Warn("installation with an unusable id left out", "source", Name)
			continue
		}
		in := Installation{ID: id, Primary: r.Primary, Resolution: shorten(r.Resolution)}
		for _, m := range r.Metrics {
			if metricRE.MatchString(m) {
				in.Metrics = append(in.Metrics, m)
			}
		}
		out = append(out, in)
	}
	if len(out) == 0 {
		return nil, errors.New("no usable installation")
	}
	return out, nil
}

// decodeEnvelope checks a CE-API answer's status and decodes its data into v.
func decodeEnvelope(body []byte, v any) error {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%w: %w", errBadAnswer, err)
	}
	if env.Status != "ok" {
		return fmt.Errorf("%w: status %q", errBadAnswer, shorten(env.Status))
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		return fmt.Errorf("%w: data: %w", errBadAnswer, err)
	}
	return nil
}
