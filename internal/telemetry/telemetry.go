// Package telemetry holds gridstream's observability: OpenTelemetry tracing (exported over OTLP
// HTTP when the standard OTEL_EXPORTER_OTLP_* variables are set), Prometheus metrics through the
// OTel Prometheus exporter on a private registry, the status Board the pipeline writes to, the
// /healthz, /readyz, /metrics and HTML status endpoints, and a slog logger that stamps trace ids.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configures Setup.
type Options struct {
	ServiceName string // resource service.name; "gridstream" when empty
	Version     string // resource service.version and the status page's version
	Logger      *slog.Logger

	// SpanExporter, when set, receives every span instead of the OTLP exporter; tests pass
	// tracetest.NewInMemoryExporter(). It is wrapped in a synchronous span processor.
	SpanExporter sdktrace.SpanExporter
	// SeriesLimit is passed to NewMetrics; 0 means DefaultSeriesLimit.
	SeriesLimit int
	// NoGlobals leaves the global tracer and meter providers alone (the W3C propagator is still
	// installed); tests that run Setup in parallel set it.
	NoGlobals bool
}

// Telemetry is the process's tracing and metrics set-up. Shutdown flushes and stops it.
type Telemetry struct {
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	Metrics        *Metrics
	Board          *Board

	registry *prometheus.Registry
}

// otlpEnv are the variables that switch the OTLP trace exporter on.
var otlpEnv = []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"}

// OTLPConfigured reports whether the environment names an OTLP endpoint for traces.
func OTLPConfigured() bool {
	for _, k := range otlpEnv {
		if os.Getenv(k) != "" {
			return true
		}
	}
	return false
}

// Setup builds the tracer provider (always a real SDK provider, so trace ids exist for events
// and logs even without an exporter), installs the W3C TraceContext and Baggage propagators
// globally, and builds a meter provider exporting to a private Prometheus registry.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	if opts.ServiceName == "" {
		opts.ServiceName = "gridstream"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", opts.ServiceName), attribute.String("service.version", opts.Version)))
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	switch {
	case opts.SpanExporter != nil:
		tpOpts = append(tpOpts, sdktrace.WithSyncer(opts.SpanExporter))
	case OTLPConfigured():
		exp, err := otlptracehttp.New(ctx) // endpoint, headers, TLS from OTEL_EXPORTER_OTLP_*
		if err != nil {
			return nil, fmt.Errorf("telemetry otlp trace exporter: %w", err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		opts.Logger.Info("tracing: exporting spans over OTLP HTTP")
	default:
		opts.Logger.Debug("tracing: no OTEL_EXPORTER_OTLP_ENDPOINT, spans are not exported")
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry prometheus exporter: %w", err), tp.Shutdown(ctx))
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))

	board := NewBoard()
	m, err := NewMetrics(mp, board, opts.SeriesLimit)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(ctx), mp.Shutdown(ctx))
	}

	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if !opts.NoGlobals {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
	}
	return &Telemetry{TracerProvider: tp, MeterProvider: mp, Metrics: m, Board: board, registry: reg}, nil
}

// Tracer returns a tracer of the process's provider for an instrumentation scope (a package path).
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// MetricsHandler serves the private Prometheus registry in the text or OpenMetrics format.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{Registry: t.registry})
}

// Shutdown flushes pending spans and stops both providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TracerProvider.Shutdown(ctx), t.MeterProvider.Shutdown(ctx))
}
