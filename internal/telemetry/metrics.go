package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Poll outcomes for Metrics.Poll. Keep the set small: it is a label.
const (
	OutcomeOK        = "ok"        // page(s) fetched, decoded and published
	OutcomeEmpty     = "empty"     // fetched fine, nothing new
	OutcomeError     = "error"     // upstream, decode or publish failure
	OutcomeThrottled = "throttled" // skipped or cut short by a quota or Retry-After
	OutcomeAuth      = "auth"      // no usable token (login required, refresh rejected)
)

// Page error reasons for Metrics.PageError. Keep the set small: it is a label.
const (
	ReasonDecode   = "decode"    // body did not decode into records
	ReasonTooLarge = "too-large" // body over the size limit
	ReasonStatus   = "status"    // unexpected HTTP status
	ReasonInvalid  = "invalid"   // decoded but a record failed validation (key, time)
)

// DefaultSeriesLimit is how many jobs of one (source, dataset), or token subjects of one source,
// get a series of their own in the per-job gauges before they are folded into one aggregate
// series (job="<source>/<dataset>/*", subject="*") holding the worst value. INGRID and G-REX
// stay far below it; NET2GRID, with one job per end user, goes above it.
const DefaultSeriesLimit = 100

// meterName is the instrumentation scope of every gridstream instrument.
const meterName = "github.com/gridstream/gridstream/internal/telemetry"

// Metrics holds the gridstream instruments. Counters and the histogram are recorded by the
// pipeline through the typed methods; gauges are observed from the Board at scrape time.
// A nil *Metrics is valid and records nothing, so tests of other packages may pass nil.
type Metrics struct {
	polls        metric.Int64Counter
	records      metric.Int64Counter
	published    metric.Int64Counter
	deduplicated metric.Int64Counter
	latency      metric.Float64Histogram
	responses    metric.Int64Counter
	pageErrors   metric.Int64Counter

	board       *Board
	seriesLimit int
	now         func() time.Time
}

// NewMetrics creates the instruments on mp and registers the gauge callbacks that read board.
// seriesLimit <= 0 means DefaultSeriesLimit.
func NewMetrics(mp metric.MeterProvider, board *Board, seriesLimit int) (*Metrics, error) {
	if board == nil {
		return nil, errors.New("telemetry metrics: nil board")
	}
	if seriesLimit <= 0 {
		seriesLimit = DefaultSeriesLimit
	}
	m := &Metrics{board: board, seriesLimit: seriesLimit, now: time.Now}
	meter := mp.Meter(meterName)
	var err error
	counter := func(name, desc string) metric.Int64Counter {
		c, e := meter.Int64Counter(name, metric.WithDescription(desc))
		err = errors.Join(err, e)
		return c
	}
	m.polls = counter("gridstream_polls", "Polls of a job, by source, dataset and outcome.")
	m.records = counter("gridstream_records", "Records decoded from upstream pages.")
	m.published = counter("gridstream_events_published", "Events acknowledged by JetStream.")
	m.deduplicated = counter("gridstream_events_deduplicated", "Records not published because the seen-store or JetStream already had them.")
	m.responses = counter("gridstream_upstream_responses", "Upstream HTTP responses by status code (code \"transport-error\" when there was none).")
	m.pageErrors = counter("gridstream_page_errors", "Upstream pages rejected without advancing the cursor, by reason.")
	m.latency, err = meter.Float64Histogram("gridstream_publish_latency",
		metric.WithUnit("s"),
		metric.WithDescription("Time from publish to JetStream acknowledgement."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	if err != nil {
		return nil, fmt.Errorf("telemetry metrics: %w", err)
	}
	if err := m.registerGauges(meter); err != nil {
		return nil, fmt.Errorf("telemetry metrics: %w", err)
	}
	return m, nil
}

func dsAttrs(source, dataset string) attribute.Set {
	return attribute.NewSet(attribute.String("source", labelValue(source)), attribute.String("dataset", labelValue(dataset)))
}

// Poll counts one poll of a job of (source, dataset) with an Outcome constant.
func (m *Metrics) Poll(ctx context.Context, source, dataset, outcome string) {
	if m == nil {
		return
	}
	m.polls.Add(ctx, 1, metric.WithAttributes(attribute.String("source", labelValue(source)),
		attribute.String("dataset", labelValue(dataset)), attribute.String("outcome", labelValue(outcome))))
}

// Records counts n records decoded from upstream pages.
func (m *Metrics) Records(ctx context.Context, source, dataset string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.records.Add(ctx, int64(n), metric.WithAttributeSet(dsAttrs(source, dataset)))
}

// Published counts n events acknowledged by JetStream.
func (m *Metrics) Published(ctx context.Context, source, dataset string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.published.Add(ctx, int64(n), metric.WithAttributeSet(dsAttrs(source, dataset)))
}

// Deduplicated counts n records dropped as already published (seen-store or JetStream duplicate).
func (m *Metrics) Deduplicated(ctx context.Context, source, dataset string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.deduplicated.Add(ctx, int64(n), metric.WithAttributeSet(dsAttrs(source, dataset)))
}

// PublishLatency records the time one publish (or one batch) waited for its acknowledgements.
func (m *Metrics) PublishLatency(ctx context.Context, source, dataset string, d time.Duration) {
	if m == nil {
		return
	}
	m.latency.Record(ctx, d.Seconds(), metric.WithAttributeSet(dsAttrs(source, dataset)))
}

// UpstreamResponse counts one HTTP response from upstream ("ingrid", "grex", "grex-auth", ...);
// code <= 0 means the request failed without a response.
func (m *Metrics) UpstreamResponse(ctx context.Context, upstream string, code int) {
	if m == nil {
		return
	}
	c := "transport-error"
	if code > 0 {
		c = strconv.Itoa(code)
	}
	m.responses.Add(ctx, 1, metric.WithAttributes(attribute.String("upstream", labelValue(upstream)), attribute.String("code", c)))
}

// PageError counts one rejected page with a Reason constant.
func (m *Metrics) PageError(ctx context.Context, source, dataset, reason string) {
	if m == nil {
		return
	}
	m.pageErrors.Add(ctx, 1, metric.WithAttributes(attribute.String("source", labelValue(source)),
		attribute.String("dataset", labelValue(dataset)), attribute.String("reason", labelValue(reason))))
}

// registerGauges declares the gauges read from the board and one callback observing them all.
func (m *Metrics) registerGauges(meter metric.Meter) error {
	var err error
	gauge := func(name, unit, desc string) metric.Float64ObservableGauge {
		opts := []metric.Float64ObservableGaugeOption{metric.WithDescription(desc)}
		if unit != "" {
			opts = append(opts, metric.WithUnit(unit))
		}
		g, e := meter.Float64ObservableGauge(name, opts...)
		err = errors.Join(err, e)
		return g
	}
	quotaUsed := gauge("gridstream_quota_used", "", "Requests used in the current quota window, summed over replicas.")
	quotaRemaining := gauge("gridstream_quota_remaining", "", "Requests left in the current quota window.")
	quotaLimit := gauge("gridstream_quota_limit", "", "Configured requests per quota window.")
	tokenRemaining := gauge("gridstream_token_remaining", "s", "Seconds until the credential needs an operator: refresh token expiry, else access token expiry. Negative when expired. Above the series limit, subject=\"*\" holds the minimum of the source.")
	tokens := gauge("gridstream_tokens", "", "Credentials per source and state (ok, expiring, login-required, error).")
	lag := gauge("gridstream_cursor_lag", "s", "How far a job's cursor trails the clock. Above the series limit per source and dataset, job=\"<source>/<dataset>/*\" holds the maximum.")
	lagMax := gauge("gridstream_cursor_lag_max", "s", "Largest cursor lag per source and dataset.")
	jobs := gauge("gridstream_jobs", "", "Jobs this replica runs, by source, dataset and state.")
	if err != nil {
		return err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		now := m.now()
		for _, q := range m.board.Quotas() {
			a := metric.WithAttributes(attribute.String("upstream", labelValue(q.Upstream)), attribute.String("window", labelValue(q.Window)))
			o.ObserveFloat64(quotaUsed, float64(q.Used), a)
			o.ObserveFloat64(quotaRemaining, float64(q.Remaining()), a)
			o.ObserveFloat64(quotaLimit, float64(q.Limit), a)
		}
		m.observeTokens(o, now, tokenRemaining, tokens)
		m.observeJobs(o, lag, lagMax, jobs)
		return nil
	}, quotaUsed, quotaRemaining, quotaLimit, tokenRemaining, tokens, lag, lagMax, jobs)
	return err
}

func (m *Metrics) observeTokens(o metric.Observer, now time.Time, remaining, count metric.Float64ObservableGauge) {
	type key struct{ source, state string }
	counts := map[key]int{}
	bySource := map[string][]TokenStatus{}
	for _, t := range m.board.Tokens() {
		counts[key{t.Source, t.State}]++
		bySource[t.Source] = append(bySource[t.Source], t)
	}
	for k, n := range counts {
		o.ObserveFloat64(count, float64(n), metric.WithAttributes(attribute.String("source", labelValue(k.source)), attribute.String("state", labelValue(k.state))))
	}
	for source, ts := range bySource {
		if len(ts) > m.seriesLimit {
			var worst time.Time
			for _, t := range ts {
				if e := t.Expiry(); !e.IsZero() && (worst.IsZero() || e.Before(worst)) {
					worst = e
				}
			}
			if !worst.IsZero() {
				o.ObserveFloat64(remaining, worst.Sub(now).Seconds(), metric.WithAttributes(attribute.String("source", labelValue(source)), attribute.String("subject", "*")))
			}
			continue
		}
		for _, t := range ts {
			if e := t.Expiry(); !e.IsZero() {
				o.ObserveFloat64(remaining, e.Sub(now).Seconds(), metric.WithAttributes(attribute.String("source", labelValue(source)), attribute.String("subject", labelValue(t.Subject))))
			}
		}
	}
}

func (m *Metrics) observeJobs(o metric.Observer, lag, lagMax, count metric.Float64ObservableGauge) {
	type ds struct{ source, dataset string }
	type stateKey struct {
		ds
		state string
	}
	groups := map[ds][]JobStatus{}
	states := map[stateKey]int{}
	for _, j := range m.board.Jobs() {
		k := ds{j.Source, j.Dataset}
		groups[k] = append(groups[k], j)
		states[stateKey{k, j.State}]++
	}
	for k, n := range states {
		o.ObserveFloat64(count, float64(n), metric.WithAttributes(attribute.String("source", labelValue(k.source)),
			attribute.String("dataset", labelValue(k.dataset)), attribute.String("state", labelValue(k.state))))
	}
	for k, js := range groups {
		var worst time.Duration
		for _, j := range js {
			worst = max(worst, j.Lag)
		}
		o.ObserveFloat64(lagMax, worst.Seconds(), metric.WithAttributes(attribute.String("source", labelValue(k.source)), attribute.String("dataset", labelValue(k.dataset))))
		if len(js) > m.seriesLimit {
			o.ObserveFloat64(lag, worst.Seconds(), metric.WithAttributes(attribute.String("job", labelValue(k.source+"/"+k.dataset+"/*"))))
			continue
		}
		for _, j := range js {
			o.ObserveFloat64(lag, j.Lag.Seconds(), metric.WithAttributes(attribute.String("job", labelValue(j.ID))))
		}
	}
}
