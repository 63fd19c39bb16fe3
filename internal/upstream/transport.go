package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gridstream/gridstream/internal/quota"
)

// ReadOnly refuses every method but GET and HEAD with ErrWriteMethod, so no write can
// reach an upstream whatever a caller does with the client (DESIGN.md invariant 5).
type ReadOnly struct{ Next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t ReadOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead:
		return t.Next.RoundTrip(req)
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return nil, fmt.Errorf("%s %s: %w", req.Method, safeURL(req.URL), ErrWriteMethod)
}

// Quota waits for the upstream's Limiter before every request it passes on. It sits
// inside Retry, so every retry spends quota too. A nil Limiter passes through.
type Quota struct {
	Limiter *quota.Limiter
	Next    http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t Quota) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.Limiter != nil {
		if err := t.Limiter.Wait(req.Context()); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("quota %s: %w", t.Limiter.Name(), err)
		}
	}
	return t.Next.RoundTrip(req)
}

// Timeout bounds one attempt, from sending the request to closing the response body
// (it sits below Quota, so waiting for quota is not part of it). Zero passes through.
type Timeout struct {
	D    time.Duration
	Next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t Timeout) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.D <= 0 {
		return t.Next.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.D)
	resp, err := t.Next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// The span layers keep credentials in query strings out of otelhttp's url.full
// attribute: hideQuery hands otelhttp a copy of the request with sensitive values
// redacted, and restoreQuery, right below otelhttp, puts the real URL back.
type realURLKey struct{}

type hideQuery struct{ Next http.RoundTripper }

func (t hideQuery) RoundTrip(req *http.Request) (*http.Response, error) {
	r, changed := redactURL(req.URL)
	if !changed {
		return t.Next.RoundTrip(req)
	}
	out := req.Clone(context.WithValue(req.Context(), realURLKey{}, req.URL))
	out.URL = r
	return t.Next.RoundTrip(out)
}

type restoreQuery struct{ Next http.RoundTripper }

func (t restoreQuery) RoundTrip(req *http.Request) (*http.Response, error) {
	u, ok := req.Context().Value(realURLKey{}).(*url.URL)
	if !ok {
		return t.Next.RoundTrip(req)
	}
	out := req.Clone(req.Context())
	out.URL = u
	return t.Next.RoundTrip(out)
}
