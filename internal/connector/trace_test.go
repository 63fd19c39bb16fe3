package connector

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/telemetry"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestOneTraceFromFetchToPublish: the spans of a poll (poll → page → HTTP GET) form one
// trace, and the events it published carry that trace in their traceparent header.
func TestOneTraceFromFetchToPublish(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tel, err := telemetry.Setup(ctx, telemetry.Options{SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()

	sb, err := sandbox.Start(sandbox.ServersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	srv := natstest.Run(t)
	cfg := DemoConfig(sb, srv.URL)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NET2GRID.Enabled, cfg.GREX.Enabled = false, false
	cfg.INGRID.Datasets = []string{"operational-notices"}
	cfg.INGRID.Contracts = []string{sandbox.INGRIDDemoContract}

	published := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Log: slog.New(slog.DiscardHandler), Telemetry: tel,
			OnPage: func(_ *pollers.Job, p pollers.PageResult) {
				if p.Published > 0 {
					select {
					case published <- struct{}{}:
					default:
					}
				}
			}})
	}()
	select {
	case <-published:
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("nothing published in 30s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	s, err := srv.JS.Stream(context.Background(), "ENERGY")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tp := msg.Header.Get(publish.HeaderTraceParent)
	parts := strings.Split(tp, "-")
	if len(parts) != 4 {
		t.Fatalf("event traceparent %q", tp)
	}
	traceID, err := trace.TraceIDFromHex(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, span := range exp.GetSpans() {
		if span.SpanContext.TraceID() != traceID {
			continue
		}
		switch {
		case strings.HasPrefix(span.Name, "poll "):
			kinds["poll"] = true
		case strings.HasPrefix(span.Name, "page "):
			kinds["page"] = true
		case strings.HasPrefix(span.Name, "publish ") && span.SpanKind == trace.SpanKindProducer:
			kinds["publish"] = true
		case span.SpanKind == trace.SpanKindClient:
			kinds["http"] = true
		}
	}
	for _, k := range []string{"poll", "page", "http", "publish"} {
		if !kinds[k] {
			t.Errorf("trace %s of the event has no %s span (found %v)", traceID, k, kinds)
		}
	}
}
