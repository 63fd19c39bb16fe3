package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/gridstream/gridstream/internal/quota"
)

// Retry defaults, used where a Retry field is zero.
const (
	DefaultMaxRetries      = 4
	DefaultMaxElapsed      = 2 * time.Minute
	DefaultMaxRetryAfter   = 2 * time.Minute
	DefaultInitialInterval = 500 * time.Millisecond
	DefaultMaxInterval     = 30 * time.Second
)

// Retry retries one request as the upstreams' fair-use rules allow:
//   - 5xx (but 501, 505), timeouts and connection errors: exponential backoff
//     (from InitialInterval, doubling, ±50% jitter, up to MaxInterval), at most
//     MaxRetries times and within MaxElapsed;
//   - 429 and 503 with Retry-After (delta-seconds or HTTP-date): pause the Limiter
//     for all jobs of the upstream, wait that long and retry; a wait above
//     MaxRetryAfter is not slept here: the answer is returned (the pause holds);
//   - 401: exactly one more try (the auth layer below has dropped its token);
//   - 403 and every other 4xx: no retry.
//
// When it gives up it returns the last response, so the caller sees its status.
// Retry must sit outside Quota so that each retry spends quota.
type Retry struct {
	Next     http.RoundTripper
	Upstream string
	// Limiter is paused on Retry-After; may be nil.
	Limiter *quota.Limiter
	// MaxRetries counts retries after the first attempt (the 401 retry aside);
	// negative disables retries.
	MaxRetries      int
	MaxElapsed      time.Duration
	MaxRetryAfter   time.Duration
	InitialInterval time.Duration
	MaxInterval     time.Duration
	// Clock defaults to quota.RealClock; Sleep defaults to quota.Sleep on Clock.
	Clock quota.Clock
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger gets one line per retry; nil discards.
	Logger *slog.Logger
	// OnStatus is called with the status code of every attempt (metrics).
	OnStatus func(code int)
}

// RoundTrip implements http.RoundTripper.
func (r *Retry) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	clock := r.Clock
	if clock == nil {
		clock = quota.RealClock{}
	}
	sleep := r.Sleep
	if sleep == nil {
		sleep = func(ctx context.Context, d time.Duration) error { return quota.Sleep(ctx, clock, d) }
	}
	log := r.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxRetries := orDefault(r.MaxRetries, DefaultMaxRetries)
	maxRetryAfter := orDefault(r.MaxRetryAfter, DefaultMaxRetryAfter)
	b := &backoff.ExponentialBackOff{
		InitialInterval:     orDefault(r.InitialInterval, DefaultInitialInterval),
		RandomizationFactor: backoff.DefaultRandomizationFactor,
		Multiplier:          2,
		MaxInterval:         orDefault(r.MaxInterval, DefaultMaxInterval),
		MaxElapsedTime:      orDefault(r.MaxElapsed, DefaultMaxElapsed),
		Stop:                backoff.Stop,
		Clock:               clock,
	}
	b.Reset()
	start := clock.Now()
	retries, authRetried := 0, false
	for attempt := 1; ; attempt++ {
		try := req.Clone(ctx)
		if req.Body != nil && req.Body != http.NoBody && attempt > 1 {
			if req.GetBody == nil {
				return nil, fmt.Errorf("%s: cannot retry a request body without GetBody", r.Upstream)
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			try.Body = body
		}
		resp, err := r.Next.RoundTrip(try)
		if ctx.Err() != nil {
			discard(resp)
			if err == nil {
				err = ctx.Err()
			}
			return nil, err
		}
		if resp != nil && r.OnStatus != nil {
			r.OnStatus(resp.StatusCode)
		}

		// Decide: wait < 0 means "the next backoff interval".
		var wait time.Duration
		reason := ""
		switch {
		case err != nil:
			if !retryableError(err) {
				return nil, err
			}
			wait, reason = -1, "transport error"
		case resp.StatusCode == http.StatusUnauthorized:
			if authRetried {
				return resp, nil
			}
			authRetried = true
			wait, reason = 0, "unauthorized"
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
			reason = http.StatusText(resp.StatusCode)
			d, ok := quota.ParseRetryAfter(resp.Header.Get("Retry-After"), clock.Now())
			if !ok {
				wait = -1
				break
			}
			if r.Limiter != nil {
				r.Limiter.Pause(clock.Now().Add(d))
			}
			if d > maxRetryAfter {
				log.Warn("upstream: Retry-After above the cap, giving up this request",
					slog.String("upstream", r.Upstream), slog.Int("status", resp.StatusCode),
					slog.Duration("retry_after", d), slog.Duration("cap", maxRetryAfter))
				return resp, nil
			}
			wait, reason = d, reason+" (Retry-After)"
		case resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented &&
			resp.StatusCode != http.StatusHTTPVersionNotSupported:
			wait, reason = -1, http.StatusText(resp.StatusCode)
		default:
			return resp, nil
		}

		if reason != "unauthorized" {
			giveUp := maxRetries < 0 || retries >= maxRetries
			if !giveUp && wait < 0 {
				wait = b.NextBackOff()
				giveUp = wait == backoff.Stop
			}
			if !giveUp && clock.Now().Sub(start)+wait > b.MaxElapsedTime {
				giveUp = true
			}
			if giveUp {
				if err != nil {
					return nil, fmt.Errorf("%s: giving up after %d attempts: %w", r.Upstream, attempt, err)
				}
				return resp, nil
			}
			retries++
			if resp != nil && resp.StatusCode == http.StatusTooManyRequests && r.Limiter != nil {
				r.Limiter.Pause(clock.Now().Add(wait)) // no Retry-After: hold all jobs for the backoff
			}
		}
		attrs := []any{
			slog.String("upstream", r.Upstream), slog.String("method", req.Method),
			slog.String("path", req.URL.Path), slog.Int("attempt", attempt),
			slog.String("reason", reason), slog.Duration("wait", wait),
		}
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		log.Info("upstream: retrying", attrs...)
		discard(resp)
		if wait > 0 {
			if err := sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
	}
}

// retryableError reports whether a transport error is worth another attempt:
// timeouts (also an attempt's own deadline) and connection failures, but not
// certificate problems or errors of the layers below (auth).
func retryableError(err error) bool {
	var (
		certErr   *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		recordErr tls.RecordHeaderError
	)
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) ||
		errors.As(err, &invalid) || errors.As(err, &recordErr) {
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// discard drains a little of a response body (so the connection can be reused) and
// closes it.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
