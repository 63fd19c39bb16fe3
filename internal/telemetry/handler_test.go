package telemetry

import (
	"context"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestHealthzAlwaysOK(t *testing.T) {
	t.Parallel()
	b := NewBoard()
	b.SetReady("nats", errors.New("connection refused"))
	code, body := get(t, NewHandler(HandlerOptions{Board: b}), "/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok even when not ready", code, body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	loginRequired := func() []TokenStatus {
		return []TokenStatus{
			{Source: "grex", Subject: "FR0001", State: TokenStateLoginRequired, Detail: "run: connector login grex"},
			{Source: "ingrid", Subject: "client", State: TokenStateOK},
		}
	}
	cases := []struct {
		name     string
		ready    map[string]error
		check    error
		tokens   func() []TokenStatus
		wantCode int
		want     []string
		notWant  []string
	}{
		{name: "all components ready", ready: map[string]error{"nats": nil, "stream": nil}, wantCode: 200, want: []string{"ready\n", "ok     nats", "ok     stream"}},
		{name: "component failing", ready: map[string]error{"nats": errors.New("no servers available"), "stream": nil}, wantCode: 503, want: []string{"not ready", "FAIL   nats: no servers available", "ok     stream"}},
		{name: "ready check failing", ready: map[string]error{"nats": nil}, check: errors.New("disconnected"), wantCode: 503, want: []string{"FAIL   check: disconnected"}},
		{name: "login required is a detail, not unready", ready: map[string]error{"nats": nil}, tokens: loginRequired, wantCode: 200,
			want: []string{"ready\n", "detail token grex/FR0001: login-required: run: connector login grex"}, notWant: []string{"ingrid"}},
		{name: "error hides e-mail", ready: map[string]error{"net2grid": errors.New("bootstrap jane@example.com failed")}, wantCode: 503, notWant: []string{"jane@"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := NewBoard()
			for k, v := range tc.ready {
				b.SetReady(k, v)
			}
			if tc.tokens != nil {
				b.AddTokenProvider(tc.tokens)
			}
			opts := HandlerOptions{Board: b}
			if tc.check != nil {
				opts.Ready = func(ctx context.Context) error {
					if _, ok := ctx.Deadline(); !ok {
						return errors.New("ready check without deadline")
					}
					return tc.check
				}
			}
			code, body := get(t, NewHandler(opts), "/readyz")
			if code != tc.wantCode {
				t.Errorf("code = %d, want %d; body:\n%s", code, tc.wantCode, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(body, w) {
					t.Errorf("body has %q:\n%s", w, body)
				}
			}
		})
	}
}

func TestMetricsEndpointServesTheRegistry(t *testing.T) {
	t.Parallel()
	tel := setupTest(t, Options{})
	tel.Metrics.Poll(context.Background(), "ingrid", "notices", OutcomeOK)
	code, body := get(t, NewHandler(HandlerOptions{Board: tel.Board, Metrics: tel.MetricsHandler()}), "/metrics")
	if code != 200 || !strings.Contains(body, "gridstream_polls_total") {
		t.Errorf("/metrics = %d, body lacks gridstream_polls_total", code)
	}
}

// boardWithJobs fills a board with n NET2GRID jobs (every 500th failing), a few INGRID and
// G-REX jobs, quotas and tokens: what a busy replica shows.
func boardWithJobs(n int) *Board {
	b := NewBoard()
	b.SetReady("nats", nil)
	b.SetReady("stream", nil)
	for i := range n {
		s := JobStatus{
			ID: fmt.Sprintf("net2grid/readings/u-%05d", i), Source: "net2grid", Dataset: "readings", Partition: fmt.Sprintf("u-%05d", i),
			LastPoll: fixedNow.Add(-time.Duration(i%300) * time.Second), LastSuccess: fixedNow.Add(-time.Duration(i%300) * time.Second),
			Lag: time.Duration(i%900) * time.Second, Published: int64(i % 97), Deduplicated: int64(i % 13), State: JobStateIdle,
		}
		if i%500 == 7 {
			s.State, s.LastError = JobStateFailing, fmt.Sprintf("net2grid readings u-%05d: GET: 503 Service Unavailable", i)
		}
		b.UpdateJob(s)
	}
	b.UpdateJob(JobStatus{ID: "ingrid/operational-notices/abc123", Source: "ingrid", Dataset: "operational-notices", Partition: "abc123",
		LastPoll: fixedNow.Add(-time.Minute), LastSuccess: fixedNow.Add(-time.Minute), Lag: 5 * time.Minute, Published: 1200, Deduplicated: 4000, State: JobStateOK})
	b.UpdateJob(JobStatus{ID: "grex/certificates/fr0001", Source: "grex", Dataset: "certificates", Partition: "FR0001",
		LastPoll: fixedNow.Add(-2 * time.Minute), LastSuccess: fixedNow.Add(-26 * time.Hour), Lag: 26 * time.Hour, State: JobStateBlocked,
		LastError: "grex certificates FR0001: login required <run connector login grex>"})
	b.AddQuotaProvider(func() []QuotaStatus {
		return []QuotaStatus{{Upstream: "grex", Window: "1m", Used: 12, Limit: 100}, {Upstream: "grex", Window: "1h", Used: 430, Limit: 500}, {Upstream: "net2grid", Window: "1s", Used: 20, Limit: 20}}
	})
	b.AddTokenProvider(func() []TokenStatus {
		return []TokenStatus{
			{Source: "grex", Subject: "FR0001", State: TokenStateLoginRequired, Detail: "refresh token expired; run connector login grex"},
			{Source: "ingrid", Subject: "client", State: TokenStateOK, AccessExpiry: fixedNow.Add(90 * time.Minute)},
			{Source: "net2grid", Subject: "jane.doe@example.com", State: TokenStateExpiring, AccessExpiry: fixedNow.Add(time.Hour), RefreshExpiry: fixedNow.Add(20 * time.Hour)},
		}
	})
	return b
}

func TestStatusPageRendersTenThousandJobsFailingFirst(t *testing.T) {
	t.Parallel()
	h := NewHandler(HandlerOptions{Board: boardWithJobs(10_000), Version: "v0.1.0", Now: func() time.Time { return fixedNow }})
	start := time.Now()
	code, body := get(t, h, "/")
	if code != 200 {
		t.Fatalf("status page = %d", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("status page took %v", d)
	}
	if len(body) > 200_000 {
		t.Errorf("status page is %d bytes: it should summarize and paginate", len(body))
	}
	if rows := strings.Count(body, `<tr class="bad" title=`) + strings.Count(body, `<tr class="ok" title=`); rows != 100 {
		t.Errorf("job rows = %d, want one page of 100", rows)
	}
	for _, want := range []string{
		"v0.1.0", "10002 jobs, 21 failing", "page 1 of 101", `href="?page=2"`,
		"readings", "operational-notices", "login-required", "430", // summary, tokens, quotas
	} {
		if !strings.Contains(body, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	// The first job row is a failing one: failing jobs come first.
	i := strings.Index(body, `title="grex/certificates/fr0001"`)
	j := strings.Index(body, `title="net2grid/readings/u-00000"`)
	if i < 0 || (j >= 0 && j < i) {
		t.Errorf("failing grex job not listed before healthy jobs (i=%d j=%d)", i, j)
	}
	if strings.Contains(body, "jane.doe") {
		t.Error("status page shows an e-mail address")
	}
}

func TestStatusPageEscapesUpstreamText(t *testing.T) {
	t.Parallel()
	b := NewBoard()
	b.UpdateJob(JobStatus{ID: "x", Source: "ingrid", Dataset: "notices", Partition: `<img src=x onerror=alert(1)>`, State: JobStateFailing, LastError: `<script>alert(1)</script>`})
	_, body := get(t, NewHandler(HandlerOptions{Board: b}), "/")
	if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
		t.Error("upstream text reached the page unescaped")
	}
	if !strings.Contains(body, "&lt;script&gt;") {
		t.Error("escaped error text missing")
	}
}

func TestStatusPageFiltersAndPaginates(t *testing.T) {
	t.Parallel()
	h := NewHandler(HandlerOptions{Board: boardWithJobs(250), PageSize: 50, Now: func() time.Time { return fixedNow }})
	cases := []struct {
		name, query string
		want        []string
	}{
		{name: "last page", query: "/?page=6", want: []string{"page 6 of 6", `href="?page=5"`}},
		{name: "page clamped", query: "/?page=99", want: []string{"page 6 of 6"}},
		{name: "by dataset", query: "/?source=ingrid&dataset=operational-notices", want: []string{"1 jobs, page 1 of 1", "abc123"}},
		{name: "failing only", query: "/?failing=1", want: []string{"2 jobs, page 1 of 1", "u-00007", "FR0001"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, body := get(t, h, tc.query)
			if code != 200 {
				t.Fatalf("code %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s lacks %q", tc.query, w)
				}
			}
		})
	}
}

func TestUnknownPathIs404(t *testing.T) {
	t.Parallel()
	if code, _ := get(t, NewHandler(HandlerOptions{}), "/nope"); code != http.StatusNotFound {
		t.Errorf("code = %d, want 404", code)
	}
}

// TestStatusPageScreenshotInChromium renders the status page of a busy replica in headless
// Chromium and checks the screenshot is a real rendering. Set GRIDSTREAM_SCREENSHOT to a path to
// keep the PNG.
func TestStatusPageScreenshotInChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s missing: install the Debian chromium package to run this test", chromium)
	}
	if testing.Short() {
		t.Skip("short mode")
	}
	t.Parallel()
	srv := httptest.NewServer(NewHandler(HandlerOptions{Board: boardWithJobs(10_000), Version: "v0.1.0", Now: func() time.Time { return fixedNow }}))
	defer srv.Close()

	out := os.Getenv("GRIDSTREAM_SCREENSHOT")
	if out == "" {
		out = filepath.Join(t.TempDir(), "status.png")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--screenshot="+out, "--window-size=1280,900", srv.URL+"/")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("screenshot not written: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 900 {
		t.Errorf("screenshot is %v, want 1280x900", b)
	}
	colours := map[uint32]bool{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y += 2 {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[(r>>8)<<16|(g>>8)<<8|b>>8] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d distinct colours: looks blank", len(colours))
	}
}
