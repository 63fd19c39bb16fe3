package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// setupTest runs Setup without touching the global providers and shuts it down at cleanup.
func setupTest(t *testing.T, opts Options) *Telemetry {
	t.Helper()
	opts.NoGlobals = true
	tel, err := Setup(context.Background(), opts)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// scrape returns the /metrics body of tel.
func scrape(t *testing.T, tel *Telemetry) string {
	t.Helper()
	srv := httptest.NewServer(NewHandler(HandlerOptions{Board: tel.Board, Metrics: tel.MetricsHandler()}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

func TestMetricNamesAppearInMetricsOutput(t *testing.T) {
	t.Parallel()
	tel := setupTest(t, Options{Version: "v1.2.3"})
	ctx := context.Background()
	m := tel.Metrics
	m.Poll(ctx, "grex", "certificates", OutcomeOK)
	m.Records(ctx, "grex", "certificates", 3)
	m.Published(ctx, "grex", "certificates", 2)
	m.Deduplicated(ctx, "grex", "certificates", 1)
	m.PublishLatency(ctx, "grex", "certificates", 3*time.Millisecond)
	m.UpstreamResponse(ctx, "grex", 429)
	m.UpstreamResponse(ctx, "grex", 0)
	m.PageError(ctx, "grex", "certificates", ReasonDecode)
	tel.Board.UpdateJob(JobStatus{ID: "grex/certificates/fr1", Source: "grex", Dataset: "certificates", Lag: time.Minute, State: JobStateOK})
	tel.Board.AddQuotaProvider(func() []QuotaStatus { return []QuotaStatus{{Upstream: "grex", Window: "1m", Used: 30, Limit: 100}} })
	tel.Board.AddTokenProvider(func() []TokenStatus {
		return []TokenStatus{{Source: "grex", Subject: "fr1", State: TokenStateOK, RefreshExpiry: time.Now().Add(time.Hour)}}
	})

	out := scrape(t, tel)
	for _, want := range []string{
		`gridstream_polls_total{dataset="certificates",outcome="ok",source="grex"} 1`,
		`gridstream_records_total{dataset="certificates",source="grex"} 3`,
		`gridstream_events_published_total{dataset="certificates",source="grex"} 2`,
		`gridstream_events_deduplicated_total{dataset="certificates",source="grex"} 1`,
		`gridstream_publish_latency_seconds_bucket{dataset="certificates",source="grex",le="0.005"} 1`,
		`gridstream_upstream_responses_total{code="429",upstream="grex"} 1`,
		`gridstream_upstream_responses_total{code="transport-error",upstream="grex"} 1`,
		`gridstream_page_errors_total{dataset="certificates",reason="decode",source="grex"} 1`,
		`gridstream_quota_used{upstream="grex",window="1m"} 30`,
		`gridstream_quota_remaining{upstream="grex",window="1m"} 70`,
		`gridstream_quota_limit{upstream="grex",window="1m"} 100`,
		`gridstream_token_remaining_seconds{source="grex",subject="fr1"} `,
		`gridstream_tokens{source="grex",state="ok"} 1`,
		`gridstream_cursor_lag_seconds{job="grex/certificates/fr1"} 60`,
		`gridstream_cursor_lag_max_seconds{dataset="certificates",source="grex"} 60`,
		`gridstream_jobs{dataset="certificates",source="grex",state="ok"} 1`,
		`service_version="v1.2.3"`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestLagAndTokenSeriesAggregateAboveSeriesLimit(t *testing.T) {
	t.Parallel()
	tel := setupTest(t, Options{SeriesLimit: 3})
	for i, lag := range []time.Duration{time.Minute, 5 * time.Minute, 2 * time.Minute, time.Second} {
		id := "u-" + string(rune('a'+i))
		tel.Board.UpdateJob(JobStatus{ID: "net2grid/readings/" + id, Source: "net2grid", Dataset: "readings", Partition: id, Lag: lag, State: JobStateOK})
	}
	tel.Board.UpdateJob(JobStatus{ID: "ingrid/notices/c1", Source: "ingrid", Dataset: "notices", Partition: "c1", Lag: 30 * time.Second, State: JobStateOK})
	now := time.Now()
	tel.Board.AddTokenProvider(func() []TokenStatus {
		var ts []TokenStatus
		for i := range 4 {
			ts = append(ts, TokenStatus{Source: "net2grid", Subject: string(rune('a' + i)), State: TokenStateOK, RefreshExpiry: now.Add(time.Duration(i+1) * 24 * time.Hour)})
		}
		return ts
	})

	out := scrape(t, tel)
	for _, want := range []string{
		`gridstream_cursor_lag_seconds{job="net2grid/readings/*"} 300`,
		`gridstream_cursor_lag_seconds{job="ingrid/notices/c1"} 30`,
		`gridstream_cursor_lag_max_seconds{dataset="readings",source="net2grid"} 300`,
		`gridstream_token_remaining_seconds{source="net2grid",subject="*"} 86`,
		`gridstream_tokens{source="net2grid",state="ok"} 4`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(out, `job="net2grid/readings/u-a"`) || strings.Contains(out, `subject="a"`) {
		t.Errorf("per-job or per-subject series above the limit:\n%s", grepLines(out, "net2grid"))
	}
}

func TestMetricLabelsNeverCarryEmailAddresses(t *testing.T) {
	t.Parallel()
	tel := setupTest(t, Options{})
	tel.Board.UpdateJob(JobStatus{ID: "net2grid/readings/jane.doe@example.com", Source: "net2grid", Dataset: "readings", Partition: "jane.doe@example.com", State: JobStateOK})
	tel.Board.AddTokenProvider(func() []TokenStatus {
		return []TokenStatus{{Source: "net2grid", Subject: "jane.doe@example.com", State: TokenStateOK, RefreshExpiry: time.Now().Add(time.Hour)}}
	})
	tel.Metrics.Poll(context.Background(), "net2grid", "readings", "ok for jane.doe@example.com")

	out := scrape(t, tel)
	if strings.Contains(out, "jane.doe") || strings.Contains(out, "example.com") {
		t.Fatalf("e-mail address in /metrics:\n%s", grepLines(out, "gridstream_"))
	}
	pseudonym := RedactEmails("jane.doe@example.com")
	if !strings.Contains(out, `job="net2grid/readings/`+pseudonym+`"`) {
		t.Errorf("want job label with pseudonym %s:\n%s", pseudonym, grepLines(out, "cursor_lag"))
	}
}

func TestNilMetricsRecordsNothing(t *testing.T) {
	t.Parallel()
	var m *Metrics
	ctx := context.Background()
	m.Poll(ctx, "a", "b", OutcomeOK)
	m.Records(ctx, "a", "b", 1)
	m.Published(ctx, "a", "b", 1)
	m.Deduplicated(ctx, "a", "b", 1)
	m.PublishLatency(ctx, "a", "b", time.Second)
	m.UpstreamResponse(ctx, "a", 200)
	m.PageError(ctx, "a", "b", ReasonStatus)
}

func TestSetupSendsSpansToTheGivenExporter(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tel := setupTest(t, Options{SpanExporter: exp})
	_, span := tel.Tracer("test").Start(context.Background(), "poll")
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "poll" {
		t.Fatalf("spans = %v, want one named poll", spans)
	}
	if got := spans[0].Resource.String(); !strings.Contains(got, "service.name=gridstream") {
		t.Errorf("resource %s lacks service.name=gridstream", got)
	}
}

func TestTraceIDsExistWithoutAnExporter(t *testing.T) {
	t.Parallel()
	tel := setupTest(t, Options{})
	ctx, span := tel.Tracer("test").Start(context.Background(), "poll")
	defer span.End()
	if !span.SpanContext().IsValid() || !span.SpanContext().IsSampled() {
		t.Fatalf("span context %v: want a valid sampled span without any exporter", span.SpanContext())
	}
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	if tp := carrier.Get("traceparent"); !strings.Contains(tp, span.SpanContext().TraceID().String()) {
		t.Errorf("global propagator injected traceparent %q, want W3C trace context with %s", tp, span.SpanContext().TraceID())
	}
}

// TestOTLPExporterOnlyWhenEndpointSet runs a real HTTP OTLP receiver and checks that spans are
// exported to it when OTEL_EXPORTER_OTLP_ENDPOINT names it. Not parallel: it sets env.
func TestOTLPExporterOnlyWhenEndpointSet(t *testing.T) {
	var posts atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer receiver.Close()

	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	if OTLPConfigured() {
		t.Fatal("OTLPConfigured with empty env")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.URL)
	if !OTLPConfigured() {
		t.Fatal("OTLPConfigured false with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	tel, err := Setup(context.Background(), Options{NoGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(context.Background(), "poll")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil { // flushes the batcher
		t.Fatalf("Shutdown: %v", err)
	}
	if posts.Load() == 0 {
		t.Fatal("no span export reached the OTLP receiver")
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
