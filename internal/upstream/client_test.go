package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gridstream/gridstream/internal/quota"
)

var t0 = time.Date(2025, 8, 5, 12, 0, 0, 0, time.UTC)

// harness is a Client on a fake clock whose Sleep records the waits and advances the
// clock instead of sleeping.
type harness struct {
	*Client
	clock *quota.FakeClock
	mu    sync.Mutex
	waits []time.Duration
	logs  *bytes.Buffer
}

func (h *harness) slept() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.waits...)
}

func newHarness(t *testing.T, baseURL string, mod func(*Options)) *harness {
	t.Helper()
	h := &harness{clock: quota.NewFakeClock(t0), logs: &bytes.Buffer{}}
	var logMu sync.Mutex
	o := Options{
		Name:    "grex",
		BaseURL: baseURL,
		Clock:   h.clock,
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.mu.Lock()
			h.waits = append(h.waits, d)
			h.mu.Unlock()
			h.clock.Advance(d)
			return ctx.Err()
		},
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, h.logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&o)
	}
	h.Client = New(o)
	return h
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// script serves the given responses in order (the last one repeats) and counts hits.
type script struct {
	hits  atomic.Int32
	steps []func(w http.ResponseWriter, r *http.Request)
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(s.hits.Add(1)) - 1
	s.steps[min(n, len(s.steps)-1)](w, r)
}

func serve(t *testing.T, steps ...func(w http.ResponseWriter, r *http.Request)) (*httptest.Server, *script) {
	t.Helper()
	s := &script{steps: steps}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, s
}

func status(code int, header ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"statusCode":%d}`, code)
	}
}

func ok(body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, body)
	}
}

func newLimiter(t *testing.T, clock quota.Clock, limit int) *quota.Limiter {
	t.Helper()
	l, err := quota.New(quota.Options{Upstream: "grex", Windows: []quota.Window{{Limit: limit, Per: time.Minute}}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestEveryRequestCarriesRequiredHeaders(t *testing.T) {
	t.Parallel()
	var got *http.Request
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		ok(`{"value":[]}`)(w, r)
	})
	h := newHarness(t, srv.URL+"/AH", func(o *Options) {
		o.Header = http.Header{"X-Extra": {"1"}}
	})
	body, err := h.Get(t.Context(), "managementapi/Accounts/FR1", url.Values{"$top": {"50"}, "$skip": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != `{"value":[]}` {
		t.Fatalf("body %q", body)
	}
	for k, want := range map[string]string{
		"Accept":       "application/json",
		"Content-Type": "application/json",
		"User-Agent":   "gridstream/",
		"X-Extra":      "1",
	} {
		if v := got.Header.Get(k); !strings.HasPrefix(v, want) {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if got.Host == "" {
		t.Error("no Host")
	}
	if got.URL.Path != "/AH/managementapi/Accounts/FR1" || got.URL.Query().Get("$skip") != "100" {
		t.Errorf("request %s", got.URL)
	}
}

func TestWriteMethodNeverLeaves(t *testing.T) {
	t.Parallel()
	srv, s := serve(t, ok(`{}`))
	h := newHarness(t, srv.URL, nil)
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, "PROPFIND"} {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/x", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := h.HTTPClient().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, ErrWriteMethod) {
			t.Errorf("%s: err = %v, want ErrWriteMethod", method, err)
		}
	}
	if n := s.hits.Load(); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
}

func TestNoRetryOn403(t *testing.T) {
	t.Parallel()
	srv, s := serve(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "<html><body><h1>Request blocked</h1> Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig</body></html>")
	})
	h := newHarness(t, srv.URL, func(o *Options) { o.Limiter = newLimiter(t, o.Clock, 100) })
	_, err := h.Get(t.Context(), "/x", nil)
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("err = %v, want ErrForbidden", err)
	}
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 || se.Upstream != "grex" {
		t.Fatalf("err = %#v, want *StatusError 403", err)
	}
	if strings.Contains(err.Error(), "eyJ") || !strings.Contains(se.Snippet, "Request blocked") {
		t.Fatalf("snippet %q: want the message without the token", se.Snippet)
	}
	if n := s.hits.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	if w := h.slept(); len(w) != 0 {
		t.Fatalf("slept %v", w)
	}
}

func TestOtherClientErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	for _, code := range []int{400, 404, 409, 422, 501} {
		srv, s := serve(t, status(code))
		h := newHarness(t, srv.URL, nil)
		_, err := h.Get(t.Context(), "/x", nil)
		var se *StatusError
		if !errors.As(err, &se) || se.Code != code || s.hits.Load() != 1 {
			t.Errorf("%d: err %v after %d requests, want one request and a StatusError", code, err, s.hits.Load())
		}
	}
}

func TestRetryAfterSecondsAndDate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		code  int
		after func(now time.Time) string
		want  time.Duration
	}{
		{"429 seconds", 429, func(time.Time) string { return "7" }, 7 * time.Second},
		{"503 seconds", 503, func(time.Time) string { return "12" }, 12 * time.Second},
		{"429 http-date", 429, func(now time.Time) string { return now.Add(3 * time.Second).Format(http.TimeFormat) }, 3 * time.Second},
		{"503 http-date", 503, func(now time.Time) string { return now.Add(40 * time.Second).Format(http.TimeFormat) }, 40 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var h *harness
			srv, s := serve(t,
				func(w http.ResponseWriter, r *http.Request) {
					status(tc.code, "Retry-After", tc.after(h.clock.Now()))(w, r)
				},
				ok(`[1]`))
			h = newHarness(t, srv.URL, func(o *Options) { o.Limiter = newLimiter(t, o.Clock, 100) })
			if _, err := h.Get(t.Context(), "/x", nil); err != nil {
				t.Fatal(err)
			}
			if w := h.slept(); len(w) != 1 || w[0] != tc.want {
				t.Fatalf("slept %v, want [%v]", w, tc.want)
			}
			if n := s.hits.Load(); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
		})
	}
}

func TestRetryAfterPausesTheUpstream(t *testing.T) {
	t.Parallel()
	srv, _ := serve(t, status(429, "Retry-After", "30"), ok(`{}`))
	var lim *quota.Limiter
	h := newHarness(t, srv.URL, func(o *Options) {
		lim = newLimiter(t, o.Clock, 100)
		o.Limiter = lim
	})
	if _, err := h.Get(t.Context(), "/x", nil); err != nil {
		t.Fatal(err)
	}
	if got := lim.PausedUntil(); !got.Equal(t0.Add(30 * time.Second)) {
		t.Fatalf("limiter paused until %v, want t0+30s", got)
	}
}

func TestRetryAfterAboveCapIsNotSleptButPauses(t *testing.T) {
	t.Parallel()
	srv, s := serve(t, status(429, "Retry-After", "3600"), ok(`{}`))
	var lim *quota.Limiter
	h := newHarness(t, srv.URL, func(o *Options) {
		lim = newLimiter(t, o.Clock, 100)
		o.Limiter = lim
		o.MaxRetryAfter = time.Minute
	})
	_, err := h.Get(t.Context(), "/x", nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 429 || se.RetryAfter != time.Hour || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v, want a 429 StatusError with RetryAfter 1h", err)
	}
	if s.hits.Load() != 1 || len(h.slept()) != 0 {
		t.Fatalf("%d requests, slept %v", s.hits.Load(), h.slept())
	}
	if got := lim.PausedUntil(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("paused until %v, want t0+1h", got)
	}
}

func TestRetriesServerErrorsWithBackoff(t *testing.T) {
	t.Parallel()
	srv, s := serve(t, status(502), status(500), status(503), ok(`{}`))
	h := newHarness(t, srv.URL, nil)
	if _, err := h.Get(t.Context(), "/x", nil); err != nil {
		t.Fatal(err)
	}
	w := h.slept()
	if len(w) != 3 || s.hits.Load() != 4 {
		t.Fatalf("slept %v over %d requests", w, s.hits.Load())
	}
	// Exponential from 500ms, ×2, ±50% jitter.
	for i, base := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second} {
		if w[i] < base/2 || w[i] > base*3/2 {
			t.Errorf("wait %d = %v, want %v ±50%%", i, w[i], base)
		}
	}
}

func TestGivesUpAfterMaxRetries(t *testing.T) {
	t.Parallel()
	srv, s := serve(t, status(500))
	h := newHarness(t, srv.URL, func(o *Options) { o.MaxRetries = 2 })
	_, err := h.Get(t.Context(), "/x", nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 500 {
		t.Fatalf("err = %v, want a 500 StatusError", err)
	}
	if n := s.hits.Load(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

func TestGivesUpAfterMaxElapsed(t *testing.T) {
	t.Parallel()
	srv, s := serve(t, status(503, "Retry-After", "50"))
	h := newHarness(t, srv.URL, func(o *Options) { o.MaxElapsed = 2 * time.Minute; o.MaxRetries = 100 })
	if _, err := h.Get(t.Context(), "/x", nil); err == nil {
		t.Fatal("no error")
	}
	if n := s.hits.Load(); n != 3 { // at 0s, 50s, 100s; 150s would pass MaxElapsed
		t.Fatalf("%d requests, want 3", n)
	}
}

func TestRetriesSpendQuota(t *testing.T) {
	t.Parallel()
	t.Run("every attempt is counted", func(t *testing.T) {
		t.Parallel()
		srv, _ := serve(t, status(500), status(502), ok(`{}`))
		var lim *quota.Limiter
		h := newHarness(t, srv.URL, func(o *Options) {
			lim = newLimiter(t, o.Clock, 10)
			o.Limiter = lim
		})
		if _, err := h.Get(t.Context(), "/x", nil); err != nil {
			t.Fatal(err)
		}
		if u := lim.Usage()[0]; u.Used != 3 {
			t.Fatalf("quota used %d, want 3 (one per attempt)", u.Used)
		}
	})
	t.Run("a retry waits for quota", func(t *testing.T) {
		t.Parallel()
		srv, s := serve(t, status(500), ok(`{}`))
		var lim *quota.Limiter
		h := newHarness(t, srv.URL, func(o *Options) {
			lim = newLimiter(t, o.Clock, 1)
			o.Limiter = lim
		})
		done := make(chan error, 1)
		go func() { _, err := h.Get(t.Context(), "/x", nil); done <- err }()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := h.clock.BlockUntil(ctx, 1); err != nil { // the retry is parked on the limiter
			t.Fatal(err)
		}
		if n := s.hits.Load(); n != 1 {
			t.Fatalf("%d requests before the window ended, want 1", n)
		}
		h.clock.Set(t0.Add(time.Minute))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := s.hits.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
	})
}

// tokenAuth is a stand-in for auth.Transport: it sends the current token and, on a
// 401, drops it so the next request gets a new one.
type tokenAuth struct {
	base http.RoundTripper
	n    atomic.Int32
}

func (a *tokenAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", fmt.Sprintf("Bearer secret-token-%d", a.n.Load()))
	resp, err := a.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		a.n.Add(1)
	}
	return resp, err
}

func TestUnauthorizedIsRetriedExactlyOnce(t *testing.T) {
	t.Parallel()
	t.Run("refreshed token succeeds", func(t *testing.T) {
		t.Parallel()
		var seen []string
		var mu sync.Mutex
		srv, s := serve(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Authorization"))
			mu.Unlock()
			if r.Header.Get("Authorization") != "Bearer secret-token-1" {
				status(401)(w, r)
				return
			}
			ok(`{}`)(w, r)
		})
		h := newHarness(t, srv.URL, func(o *Options) {
			o.Auth = func(base http.RoundTripper) http.RoundTripper { return &tokenAuth{base: base} }
		})
		if _, err := h.Get(t.Context(), "/x", nil); err != nil {
			t.Fatal(err)
		}
		if s.hits.Load() != 2 || seen[1] != "Bearer secret-token-1" || len(h.slept()) != 0 {
			t.Fatalf("tokens sent %v, slept %v", seen, h.slept())
		}
	})
	t.Run("second 401 is returned", func(t *testing.T) {
		t.Parallel()
		srv, s := serve(t, status(401))
		h := newHarness(t, srv.URL, func(o *Options) {
			o.Auth = func(base http.RoundTripper) http.RoundTripper { return &tokenAuth{base: base} }
		})
		_, err := h.Get(t.Context(), "/x", nil)
		if !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if n := s.hits.Load(); n != 2 {
			t.Fatalf("%d requests, want 2", n)
		}
		if strings.Contains(err.Error(), "secret-token") || strings.Contains(h.logs.String(), "secret-token") {
			t.Fatal("token leaked into the error or the log")
		}
	})
}

func TestRetriesConnectionErrorsAndTimeouts(t *testing.T) {
	t.Parallel()
	t.Run("connection dropped", func(t *testing.T) {
		t.Parallel()
		srv, s := serve(t, func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}, ok(`{}`))
		h := newHarness(t, srv.URL, nil)
		if _, err := h.Get(t.Context(), "/x", nil); err != nil {
			t.Fatal(err)
		}
		if s.hits.Load() != 2 || len(h.slept()) != 1 {
			t.Fatalf("%d requests, slept %v", s.hits.Load(), h.slept())
		}
	})
	t.Run("attempt timeout", func(t *testing.T) {
		t.Parallel()
		srv, s := serve(t, func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, ok(`{}`))
		h := newHarness(t, srv.URL, func(o *Options) { o.Timeout = 100 * time.Millisecond })
		if _, err := h.Get(t.Context(), "/x", nil); err != nil {
			t.Fatal(err)
		}
		if s.hits.Load() != 2 {
			t.Fatalf("%d requests, want 2", s.hits.Load())
		}
	})
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	big := `{"a":"` + strings.Repeat("x", 2000) + `"}`
	for _, tc := range []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request)
	}{
		{"with Content-Length", ok(big)},
		{"chunked", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			for i := 0; i < len(big); i += 100 {
				io.WriteString(w, big[i:min(i+100, len(big))])
				w.(http.Flusher).Flush()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := serve(t, tc.handler)
			h := newHarness(t, srv.URL, func(o *Options) { o.MaxBody = 1024 })
			if _, err := h.Get(t.Context(), "/x", nil); !errors.Is(err, ErrBodyTooLarge) {
				t.Fatalf("err = %v, want ErrBodyTooLarge", err)
			}
		})
	}
	srv, _ := serve(t, ok(big))
	h := newHarness(t, srv.URL, func(o *Options) { o.MaxBody = int64(len(big)) })
	if _, err := h.Get(t.Context(), "/x", nil); err != nil {
		t.Fatalf("body of exactly MaxBody: %v", err)
	}
}

func TestRejectsHTMLAndMalformedPages(t *testing.T) {
	t.Parallel()
	raw := func(ct, body string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["Content-Type"] = nil
			if ct != "" {
				w.Header().Set("Content-Type", ct)
			}
			io.WriteString(w, body)
		}
	}
	for _, tc := range []struct {
		name    string
		handler func(http.ResponseWriter, *http.Request)
	}{
		{"html page", raw("text/html; charset=utf-8", "<!DOCTYPE html><html><body>Maintenance</body></html>")},
		{"html labelled json", raw("application/json", "<html><body>Login</body></html>")},
		{"html without content type", raw("", "  <html>Login</html>")},
		{"xml", raw("application/xml", `<?xml version="1.0"?><a/>`)},
		{"truncated json", raw("application/json", `{"value":[{"id":1},{"id"`)},
		{"empty body", raw("application/json", "")},
		{"json scalar", raw("application/json", `"ok"`)},
		{"connection cut mid-body", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"value":[`)
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := serve(t, tc.handler)
			h := newHarness(t, srv.URL, nil)
			body, err := h.Get(t.Context(), "/x", nil)
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("err = %v, want ErrNotJSON", err)
			}
			if body != nil {
				t.Fatal("a body came back with the error")
			}
		})
	}
}

func TestNoSecretInErrorsLogsOrSpans(t *testing.T) {
	t.Parallel()
	var gotQuery atomic.Value
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotQuery.Store(r.URL.RawQuery)
		status(500)(w, r)
	})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := newHarness(t, srv.URL, func(o *Options) {
		o.TracerProvider = tp
		o.MaxRetries = 1
		o.Auth = func(base http.RoundTripper) http.RoundTripper { return &tokenAuth{base: base} }
	})
	q := url.Values{"access_token": {"qsecret-1"}, "$skip": {"10"}}
	_, err := h.Get(t.Context(), "/x", q)
	if err == nil {
		t.Fatal("no error")
	}
	if q, _ := gotQuery.Load().(string); !strings.Contains(q, "qsecret-1") {
		t.Fatalf("the upstream did not get the real query: %q", q)
	}
	var spanText strings.Builder
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			fmt.Fprintf(&spanText, "%s=%s\n", a.Key, a.Value.String())
		}
	}
	if !strings.Contains(spanText.String(), string(attribute.Key("url.full"))) {
		t.Fatalf("no url.full attribute in spans:\n%s", spanText.String())
	}
	for where, text := range map[string]string{"error": err.Error(), "log": h.logs.String(), "span": spanText.String()} {
		if strings.Contains(text, "qsecret") || strings.Contains(text, "secret-token") {
			t.Errorf("secret in %s: %s", where, text)
		}
	}

	// A transport error (url.Error) names the URL: redacted too.
	srv.Close()
	_, err = h.Get(t.Context(), "/x", q)
	if err == nil || strings.Contains(err.Error(), "qsecret") {
		t.Fatalf("err = %v", err)
	}
}

func TestTLSIsVerified(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(ok(`{}`)))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	t.Run("trusted CA", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv.URL, func(o *Options) { o.TLSConfig = &tls.Config{RootCAs: pool} })
		if _, err := h.Get(t.Context(), "/x", nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown CA fails without retries", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv.URL, nil)
		_, err := h.Get(t.Context(), "/x", nil)
		if err == nil || len(h.slept()) != 0 {
			t.Fatalf("err = %v, slept %v", err, h.slept())
		}
	})
	t.Run("insecure refused", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, srv.URL, func(o *Options) {
			o.TLSConfig = &tls.Config{RootCAs: pool, InsecureSkipVerify: true}
		})
		if _, err := h.Get(t.Context(), "/x", nil); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("err = %v, want ErrInvalidOptions", err)
		}
	})
}

func TestRefusesCrossOriginRedirect(t *testing.T) {
	t.Parallel()
	other, otherHits := serve(t, ok(`{}`))
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
	})
	h := newHarness(t, srv.URL, nil)
	if _, err := h.Get(t.Context(), "/x", nil); err == nil {
		t.Fatal("redirect to another origin followed")
	}
	if n := otherHits.hits.Load(); n != 0 {
		t.Fatalf("other origin got %d requests", n)
	}
}

func TestInvalidBaseURL(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "ftp://example.com", "http://example.com", "https://user:pw@example.com", "https://example.com/?key=1", "::"} {
		if _, err := New(Options{Name: "grex", BaseURL: base}).Get(t.Context(), "/x", nil); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%q: err = %v, want ErrInvalidOptions", base, err)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("%q: error leaks the password: %v", base, err)
		}
	}
	if c := New(Options{Name: "sandbox", BaseURL: "http://sandbox:8080", AllowPlainHTTP: true}); c.err != nil {
		t.Errorf("AllowPlainHTTP: %v", c.err)
	}
}

func TestSnippetRedactsTokens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, secret string }{
		{"bearer", "invalid header Authorization: Bearer abcdef123456", "abcdef123456"},
		{"jwt", `token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl expired`, "eyJzdWIiOiJ4In0"},
		{"json field", `{"error":"x","refresh_token":"rt-123456"}`, "rt-123456"},
		{"form field", `client_secret=cs-98765&grant_type=refresh_token`, "cs-98765"},
		{"password", `{"password": "hunter22"}`, "hunter22"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := snippet([]byte(tc.in)); strings.Contains(got, tc.secret) {
				t.Fatalf("snippet(%q) = %q keeps the secret", tc.in, got)
			}
		})
	}
	if got := snippet([]byte(strings.Repeat("é", 1000))); len([]rune(got)) > snippetLen+1 {
		t.Fatalf("snippet not shortened: %d runes", len([]rune(got)))
	}
}
