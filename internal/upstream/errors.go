package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors callers branch on. All of them mean: do not advance a cursor.
var (
	// ErrWriteMethod: a method other than GET or HEAD was refused before it left the
	// process (DESIGN.md invariant 5: gridstream is read-only).
	ErrWriteMethod = errors.New("write method refused: the connector is read-only")
	// ErrForbidden matches a *StatusError with code 403 (G-REX firewall: never retried).
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized matches a *StatusError with code 401 (after the one retry).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRateLimited matches a *StatusError with code 429.
	ErrRateLimited = errors.New("rate limited")
	// ErrBodyTooLarge: the response body exceeded Options.MaxBody.
	ErrBodyTooLarge = errors.New("response body too large")
	// ErrNotJSON: the body is not a JSON document (HTML error page, wrong content
	// type, empty, truncated or malformed JSON).
	ErrNotJSON = errors.New("response is not JSON")
	// ErrInvalidOptions: New was given options it refuses (bad BaseURL, insecure TLS).
	// Every Get of such a Client returns it.
	ErrInvalidOptions = errors.New("invalid upstream options")
)

// StatusError is a non-2xx answer that was not (or no longer) retried.
type StatusError struct {
	Upstream string
	Code     int
	// Snippet is the start of the body, sanitized: printable, short, tokens redacted.
	Snippet string
	// RetryAfter is the parsed Retry-After header of a 429/503, zero when absent.
	RetryAfter time.Duration
}

// Error reads "grex: HTTP 403 Forbidden: <snippet>".
func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: HTTP %d %s", e.Upstream, e.Code, http.StatusText(e.Code))
	if e.RetryAfter > 0 {
		s += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	if e.Snippet != "" {
		s += ": " + e.Snippet
	}
	return s
}

// Is matches ErrForbidden (403), ErrUnauthorized (401) and ErrRateLimited (429).
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrForbidden:
		return e.Code == http.StatusForbidden
	case ErrUnauthorized:
		return e.Code == http.StatusUnauthorized
	case ErrRateLimited:
		return e.Code == http.StatusTooManyRequests
	}
	return false
}
