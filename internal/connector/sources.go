package connector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/ingrid"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/telemetry"
	"github.com/nats-io/nats.go/jetstream"
)

// source is what the connector needs of a source package.
type source struct {
	name   string
	Jobs   func(ctx context.Context) ([]*pollers.Job, error)
	Health func() []auth.Health
	// limiter is the upstream's quota; jobs slow down as it fills.
	limiter *quota.Limiter
}

func quotaBucket(ctx context.Context, js jetstream.JetStream, cfg config.Config) (jetstream.KeyValue, error) {
	return quota.OpenBucket(ctx, js, cfg.KV.Quota, cfg.Stream.Replicas)
}

// limiter builds an upstream's limiter shared through the quota bucket, and shows its
// windows on the status board and in metrics.
func limiter(st *State, tel *telemetry.Telemetry, log *slog.Logger, name string, perMinute, perHour int) (*quota.Limiter, error) {
	var windows []quota.Window
	if perMinute > 0 {
		windows = append(windows, quota.Window{Limit: perMinute, Per: time.Minute})
	}
	if perHour > 0 {
		windows = append(windows, quota.Window{Limit: perHour, Per: time.Hour})
	}
	if len(windows) == 0 {
		return nil, nil
	}
	l, err := quota.New(quota.Options{Upstream: name, Windows: windows, KV: st.Quota, Logger: log, Margin: time.Second})
	if err != nil {
		return nil, err
	}
	if tel == nil {
		return l, nil
	}
	tel.Board.AddQuotaProvider(func() []telemetry.QuotaStatus {
		var out []telemetry.QuotaStatus
		for _, u := range l.Usage() {
			out = append(out, telemetry.QuotaStatus{Upstream: name, Window: u.Per.String(), Used: u.Used, Limit: u.Limit})
		}
		return out
	})
	return l, nil
}

func tokenStatuses(s source) func() []telemetry.TokenStatus {
	return func() []telemetry.TokenStatus {
		if s.Health == nil {
			return nil
		}
		var out []telemetry.TokenStatus
		for _, h := range s.Health() {
			out = append(out, telemetry.TokenStatus{
				Source: h.Source, Subject: h.Subject, State: string(h.State),
				AccessExpiry: h.AccessExpiry, RefreshExpiry: h.RefreshExpiry, Detail: h.LastError,
			})
		}
		return out
	}
}

// Deps are what the source constructors share.
type Deps struct {
	Config  config.Config
	State   *State
	Tel     *telemetry.Telemetry
	Log     *slog.Logger
	Version string
}

func buildSources(ctx context.Context, d Deps) ([]source, error) {
	cfg := d.Config
	var out []source
	if cfg.INGRID.Enabled {
		opts, err := INGRIDOptions(d)
		if err != nil {
			return nil, fmt.Errorf("ingrid: %w", err)
		}
		s, err := ingrid.New(opts)
		if err != nil {
			return nil, fmt.Errorf("ingrid: %w", err)
		}
		out = append(out, source{name: "ingrid", Jobs: s.Jobs, Health: s.Health, limiter: opts.Limiter})
	}
	if cfg.NET2GRID.Enabled {
		opts, _, err := NET2GRIDOptions(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("net2grid: %w", err)
		}
		s, err := net2grid.New(opts)
		if err != nil {
			return nil, fmt.Errorf("net2grid: %w", err)
		}
		out = append(out, source{name: "net2grid", Jobs: s.Jobs, Health: s.Health, limiter: opts.Limiter})
	}
	if cfg.GREX.Enabled {
		opts, err := GREXOptions(d)
		if err != nil {
			return nil, fmt.Errorf("grex: %w", err)
		}
		s, err := grex.New(opts)
		if err != nil {
			return nil, fmt.Errorf("grex: %w", err)
		}
		out = append(out, source{name: "grex", Jobs: s.Jobs, Health: s.Health, limiter: opts.Limiter})
	}
	return out, nil
}

// INGRIDOptions maps the configuration to the INGRID source's options.
func INGRIDOptions(d Deps) (ingrid.Options, error) {
	c := d.Config.INGRID
	lim, err := limiter(d.State, d.Tel, d.Log, "ingrid", c.PerMinute, c.PerHour)
	if err != nil {
		return ingrid.Options{}, err
	}
	return ingrid.Options{
		APIBase: c.APIBase, TokenURL: c.TokenURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthScheme: c.AuthScheme, Contracts: c.Contracts, Datasets: c.Datasets, Limiter: lim,
		Logger: d.Log.With("source", "ingrid"), Timeout: c.Timeout, UserAgent: config.UserAgent(d.Version),
		OnStatus: statusHook(d, "ingrid"),
	}, nil
}

// NET2GRIDOptions maps the configuration to the NET2GRID source's options, with its
// user registry. The token store must be open (GRIDSTREAM_TOKEN_KEY).
func NET2GRIDOptions(ctx context.Context, d Deps) (net2grid.Options, *net2grid.Registry, error) {
	c := d.Config.NET2GRID
	if d.State.Tokens == nil {
		return net2grid.Options{}, nil, errors.New("GRIDSTREAM_TOKEN_KEY is required: refresh tokens are stored encrypted")
	}
	reg, err := net2grid.OpenRegistry(ctx, d.State.JS, c.UsersBucket, publish.KVConfig{Storage: d.Config.Stream.Storage, Replicas: d.Config.Stream.Replicas}, nil)
	if err != nil {
		return net2grid.Options{}, nil, err
	}
	lim, err := limiter(d.State, d.Tel, d.Log, "net2grid", c.PerMinute, 0)
	if err != nil {
		return net2grid.Options{}, nil, err
	}
	return net2grid.Options{
		APIBase: c.APIBase, TokenURL: c.TokenURL, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		Users: reg, TokenStore: d.State.Tokens, Limiter: lim, UserAgent: config.UserAgent(d.Version),
		// One connection pool for every end user (and every login of a bulk import).
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
		Logger:    d.Log.With("source", "net2grid"), OnStatus: statusHook(d, "net2grid"),
	}, reg, nil
}

// GREXOptions maps the configuration to the G-REX source's options.
func GREXOptions(d Deps) (grex.Options, error) {
	c := d.Config.GREX
	if d.State.Tokens == nil {
		return grex.Options{}, errors.New("GRIDSTREAM_TOKEN_KEY is required: refresh tokens are stored encrypted")
	}
	lim, err := limiter(d.State, d.Tel, d.Log, "grex", c.PerMinute, c.PerHour)
	if err != nil {
		return grex.Options{}, err
	}
	return grex.Options{
		APIBase: c.APIBase, AuthorizeURL: c.AuthorizeURL, TokenURL: c.TokenURL, ClientID: c.ClientID,
		RedirectURI: c.RedirectURI, Scope: c.Scope, Accounts: c.Accounts, TokenStore: d.State.Tokens,
		Limiter: lim, Logger: d.Log.With("source", "grex"), UserAgent: config.UserAgent(d.Version),
		ExpiryWarning: c.RefreshWarn, OnStatus: statusHook(d, "grex"), Timeout: c.Timeout,
		HTTPClient: &http.Client{Timeout: c.Timeout}, // token requests to B2C
	}, nil
}

// statusHook counts upstream answers by status code (nil outside `run`: CLI commands
// have no metrics).
func statusHook(d Deps, upstream string) func(int) {
	if d.Tel == nil {
		return nil
	}
	m := d.Tel.Metrics
	return func(code int) { m.UpstreamResponse(context.Background(), upstream, code) }
}
