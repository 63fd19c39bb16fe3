// Package upstream is the one HTTP path every poller uses to read an upstream API.
// A Client's transport is a chain of small RoundTrippers, outermost first:
//
//	otelhttp → ReadOnly → Retry → Quota → Timeout → auth (from the caller) → http.Transport
//
// so that a write never leaves the process, every retry spends quota, a 401 reaches
// the auth layer, and every request is traced. Get then size-limits the body and
// accepts only JSON, so a poller never advances its cursor on a bad page.
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/gridstream/gridstream/internal/quota"
)

// Defaults for zero Options fields.
const (
	DefaultTimeout = 30 * time.Second
	DefaultMaxBody = 16 << 20
)

// Options configure a Client. Name and BaseURL are required.
type Options struct {
	// Name of the upstream ("grex"), in errors, logs and spans.
	Name string
	// BaseURL is prefixed to every Get path, e.g. "https://eexfranceapi.grexel.com".
	// It must be https, or http for a loopback host (tests, the sandbox) or with
	// AllowPlainHTTP.
	BaseURL string
	// AllowPlainHTTP permits an http BaseURL on a non-loopback host (a sandbox in
	// another container). Never for a real upstream: tokens would travel in clear.
	AllowPlainHTTP bool
	// Limiter spends the upstream's quota on every attempt; nil means no limit.
	Limiter *quota.Limiter
	// Auth wraps the base transport with credentials (auth.Transport); nil sends
	// requests unauthenticated.
	Auth func(base http.RoundTripper) http.RoundTripper
	// UserAgent defaults to "gridstream/<module version>".
	UserAgent string
	// Header is added to every request (after the defaults, so it may override them).
	Header http.Header
	// Timeout bounds each attempt, body included. Default 30s.
	Timeout time.Duration
	// MaxBody bounds a response body in bytes. Default 16 MiB.
	MaxBody int64
	// MaxRetries, MaxElapsed and MaxRetryAfter tune Retry (see its doc).
	MaxRetries    int
	MaxElapsed    time.Duration
	MaxRetryAfter time.Duration
	// Logger gets retries and refusals; nil discards.
	Logger *slog.Logger
	// OnStatus is called with the status of every attempt (metrics hook).
	OnStatus func(code int)
	// Clock and Sleep let tests run retries without waiting. Defaults: real time.
	Clock quota.Clock
	Sleep func(ctx context.Context, d time.Duration) error
	// TLSConfig sets roots (RootCAs for a private CA), client certificates, etc.
	// Certificates are always verified: InsecureSkipVerify is refused.
	TLSConfig *tls.Config
	// TracerProvider and MeterProvider default to the otel globals.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// Client reads one upstream. Safe for concurrent use.
type Client struct {
	name    string
	base    *url.URL
	header  http.Header
	maxBody int64
	http    *http.Client
	clock   quota.Clock
	err     error // invalid options: returned by every Get
}

// New builds the transport chain. It does not fail: invalid options (bad BaseURL,
// InsecureSkipVerify) make every Get return an error wrapping ErrInvalidOptions.
func New(o Options) *Client {
	c := &Client{name: o.Name, maxBody: orDefault(o.MaxBody, DefaultMaxBody)}
	if c.name == "" {
		c.name = "upstream"
	}
	c.clock = o.Clock
	if c.clock == nil {
		c.clock = quota.RealClock{}
	}
	base, err := parseBase(o.BaseURL, o.AllowPlainHTTP)
	if err != nil {
		c.err = fmt.Errorf("%s: base URL: %w: %w", c.name, ErrInvalidOptions, err)
	}
	c.base = base
	if o.TLSConfig != nil && o.TLSConfig.InsecureSkipVerify {
		c.err = fmt.Errorf("%s: %w: InsecureSkipVerify is not allowed", c.name, ErrInvalidOptions)
	}

	c.header = http.Header{}
	c.header.Set("Accept", "application/json")
	c.header.Set("Content-Type", "application/json")
	c.header.Set("User-Agent", orDefault(o.UserAgent, defaultUserAgent()))
	for k, vs := range o.Header {
		c.header.Del(k)
		for _, v := range vs {
			c.header.Add(k, v)
		}
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.TLSConfig != nil {
		tr.TLSClientConfig = o.TLSConfig.Clone()
		tr.TLSClientConfig.InsecureSkipVerify = false
	}
	var rt http.RoundTripper = tr
	if o.Auth != nil {
		rt = o.Auth(rt)
	}
	rt = Timeout{D: orDefault(o.Timeout, DefaultTimeout), Next: rt}
	rt = Quota{Limiter: o.Limiter, Next: rt}
	rt = &Retry{
		Next: rt, Upstream: c.name, Limiter: o.Limiter,
		MaxRetries: o.MaxRetries, MaxElapsed: o.MaxElapsed, MaxRetryAfter: o.MaxRetryAfter,
		Clock: o.Clock, Sleep: o.Sleep, Logger: o.Logger, OnStatus: o.OnStatus,
	}
	rt = ReadOnly{Next: rt}
	var otelOpts []otelhttp.Option
	if o.TracerProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(o.TracerProvider))
	}
	if o.MeterProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithMeterProvider(o.MeterProvider))
	}
	name := c.name
	otelOpts = append(otelOpts, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return name + " " + r.Method
	}))
	rt = hideQuery{Next: otelhttp.NewTransport(restoreQuery{Next: rt}, otelOpts...)}

	c.http = &http.Client{Transport: rt, CheckRedirect: c.checkRedirect}
	return c
}

// Name returns the upstream's name.
func (c *Client) Name() string { return c.name }

// HTTPClient returns an *http.Client on the same chain, for code that needs one; it
// is just as read-only, quota-bound and retrying as Get.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Get reads path (relative to the base URL) with query and returns the body, which
// is a JSON object or array within MaxBody bytes. A non-2xx answer is a *StatusError;
// other failures wrap ErrBodyTooLarge, ErrNotJSON or the transport error. Errors name
// the URL without credentials.
func (c *Client) Get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	u := c.base.JoinPath(path)
	u.RawQuery = query.Encode()
	where := fmt.Sprintf("%s GET %s", c.name, safeURL(u))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	req.Header = c.header.Clone()
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) { // its message holds the full URL: replace it
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	defer func() { _ = resp.Body.Close() }()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10)) // enough for a snippet
		se := &StatusError{Upstream: c.name, Code: resp.StatusCode, Snippet: snippet(head)}
		if d, ok := quota.ParseRetryAfter(resp.Header.Get("Retry-After"), c.clock.Now()); ok {
			se.RetryAfter = d
		}
		return nil, se
	}
	body, readErr := readLimited(resp, c.maxBody)
	if readErr != nil {
		return nil, fmt.Errorf("%s: %w", where, readErr)
	}
	if err := checkJSON(resp.Header.Get("Content-Type"), body); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return body, nil
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("stopped after 5 redirects")
	}
	// Auth layers add credentials to every request they see: never follow a
	// redirect to another origin.
	if req.URL.Scheme != c.base.Scheme || req.URL.Host != c.base.Host {
		return fmt.Errorf("refusing redirect to another origin (%s://%s)", req.URL.Scheme, req.URL.Host)
	}
	return nil
}

// readLimited reads at most max bytes of the body.
func readLimited(resp *http.Response, max int64) ([]byte, error) {
	if resp.ContentLength > max {
		return nil, fmt.Errorf("%w: Content-Length %d > %d bytes", ErrBodyTooLarge, resp.ContentLength, max)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return body, fmt.Errorf("%w: body truncated: %w", ErrNotJSON, err)
	}
	if int64(len(body)) > max {
		return body[:max], fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, max)
	}
	return body, nil
}

// checkJSON accepts a JSON object or array with a JSON content type (or none).
func checkJSON(contentType string, body []byte) error {
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil || !(mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("%w: Content-Type %q", ErrNotJSON, snippet([]byte(contentType)))
		}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return fmt.Errorf("%w: empty body", ErrNotJSON)
	}
	if trimmed[0] != '{' && trimmed[0] != '[' {
		return fmt.Errorf("%w: body starts with %q", ErrNotJSON, snippet(trimmed[:min(len(trimmed), 16)]))
	}
	if !json.Valid(trimmed) || !utf8.Valid(trimmed) { // JSON is UTF-8 (RFC 8259); decoding would turn bad bytes into U+FFFD
		return fmt.Errorf("%w: malformed or truncated JSON (%d bytes)", ErrNotJSON, len(body))
	}
	return nil
}

func parseBase(s string, allowHTTP bool) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("unparsable") // url.Parse's error repeats the URL
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("want scheme://host[/path] without credentials, query or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !isLoopback(u.Hostname()) {
			return nil, errors.New("plain http is allowed for loopback hosts only (or AllowPlainHTTP)")
		}
	default:
		return nil, fmt.Errorf("scheme %q: want https", u.Scheme)
	}
	return u, nil
}

func defaultUserAgent() string {
	v := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = strings.TrimPrefix(bi.Main.Version, "v")
	}
	return "gridstream/" + v
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
