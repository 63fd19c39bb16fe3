package net2grid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

// Name is the source name in subjects, event types and Health.
const Name = "net2grid"

// Quarter is the resolution the readings dataset asks for.
const Quarter = 15 * time.Minute

// Metrics are the energy-measurements metrics the connector reads when an installation does
// not say which it has.
var Metrics = []string{"electricity-offtake", "electricity-feedin", "gas"}

// Partition parameters of a readings job.
const (
	// ParamInstallation is the primary installation id.
	ParamInstallation = "installation"
	// ParamTargets lists what one poll reads: "installation:metric" pairs, comma separated.
	ParamTargets = "targets"
)

// metricPlaceholder stands for the metric in a readings request path; the readings fetcher
// replaces it with each target's metric.
const metricPlaceholder = "{metric}"

// Readings is the quarter-hour energy readings of every installation and metric of one end
// user. One request reads a window for every (installation, metric) target of the user; a record
// is one quarter of one metric of one installation.
//
// LookBack covers batch-fed installations, whose quarters arrive hours late in bulk, and the
// revisions of already delivered quarters; MaxSpan keeps one request at 672 quarters, far
// below the CE-API's per-call value limit (past which it would silently drop the window's start).
var Readings = &pollers.Dataset{
	Source:   Name,
	Name:     "readings",
	Cadence:  15 * time.Minute,
	LookBack: 72 * time.Hour,
	Backfill: 7 * 24 * time.Hour,
	MaxSpan:  7 * 24 * time.Hour,
	Request:  readingsRequest,
	Decode:   DecodeReadings,
}

// Datasets are the NET2GRID datasets.
var Datasets = []*pollers.Dataset{Readings}

// pathTime formats a bound of an energy-measurements path (UTC, half-open end).
const pathTime = "2006-01-02T15:04:05"

// readingsRequest asks for the quarters starting in [w.From, w.To): From rounded down to a
// quarter, To rounded up to a second.
func readingsRequest(p pollers.Partition, w pollers.Window) (string, url.Values) {
	from := w.From.UTC().Truncate(Quarter)
	to := w.To.UTC()
	if t := to.Truncate(time.Second); t.Before(to) {
		to = t.Add(time.Second)
	}
	path := "/energy-measurements/" + metricPlaceholder + "/real-time/quarters/" + from.Format(pathTime) + "/" + to.Format(pathTime)
	return path, url.Values{"target": strings.Split(p.Params[ParamTargets], ",")}
}

// targetsParam encodes the targets of a user's installations.
func targetsParam(insts []Installation) string {
	var parts []string
	for _, in := range insts {
		ms := in.Metrics
		if len(ms) == 0 {
			ms = Metrics
		}
		for _, m := range ms {
			parts = append(parts, in.ID+":"+m)
		}
	}
	return strings.Join(parts, ",")
}

// readingsPage is what the readings fetcher hands to DecodeReadings: the CE-API answer of each
// target, unchanged.
type readingsPage struct {
	Pages []targetAnswer `json:"pages"`
}

type targetAnswer struct {
	InstallationID string          `json:"installation_id"`
	Metric         string          `json:"metric"`
	Body           json.RawMessage `json:"body"`
}

// readingsFetcher turns one readings request into one CE-API call per target and returns their
// answers as one page, so a user's job covers all its installations and metrics. Any failed
// call fails the page, and the cursor stays.
type readingsFetcher struct {
	api pollers.Fetcher // the user's upstream client, relative to <base>/v2
}

// Get fetches every target of query["target"] for path, or path itself when it has no metric.
func (f readingsFetcher) Get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	if !strings.Contains(path, metricPlaceholder) {
		return f.api.Get(ctx, path, query)
	}
	var page readingsPage
	for _, t := range query["target"] {
		inst, metric, ok := strings.Cut(t, ":")
		if !ok || inst == "" || metric == "" {
			return nil, fmt.Errorf("net2grid readings: malformed target parameter")
		}
		p := strings.Replace(path, metricPlaceholder, url.PathEscape(metric), 1)
		body, err := f.api.Get(ctx, p, url.Values{"installation_id": {inst}})
		if err != nil {
			return nil, fmt.Errorf("net2grid readings %s: %w", metric, err)
		}
		body = bytes.TrimSpace(body)
		if !json.Valid(body) {
			return nil, fmt.Errorf("net2grid readings %s: answer is not JSON", metric)
		}
		page.Pages = append(page.Pages, targetAnswer{InstallationID: inst, Metric: metric, Body: body})
	}
	return json.Marshal(page)
}

// envelope is the CE-API answer wrapper.
type envelope struct {
	Status  string          `json:"status"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

type measurementsData struct {
	InstallationID string `json:"installation_id"`
	Metric         string `json:"metric"`
	Interval       string `json:"interval"`
	Unit           string `json:"unit"`
	Results        *[]struct {
		Timestamp string      `json:"timestamp"`
		Value     json.Number `json:"value"`
	} `json:"results"`
}

// Reading is the body of a readings event: one quarter of one metric of one installation.
type Reading struct {
	InstallationID string      `json:"installation_id"`
	Metric         string      `json:"metric"`
	Interval       string      `json:"interval"`
	Start          time.Time   `json:"start"`
	End            time.Time   `json:"end"`
	Value          json.Number `json:"value"`
	Unit           string      `json:"unit,omitempty"`
}

// errBadAnswer marks an upstream answer the decoder cannot use.
var errBadAnswer = errors.New("net2grid: malformed energy-measurements answer")

// DecodeReadings turns a readings page into records keyed "<installation>/<metric>/<start>",
// start in UTC RFC 3339, ordered by start then key. A non-ok envelope, a missing result list, an
// unreadable timestamp, a non-numeric value, a mismatched installation or metric or a repeated
// quarter rejects the whole page.
func DecodeReadings(body []byte) ([]pollers.Record, error) {
	var page readingsPage
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("%w: page: %w", errBadAnswer, err)
	}
	if page.Pages == nil {
		return nil, fmt.Errorf("%w: page has no answers", errBadAnswer)
	}
	var out []pollers.Record
	keys := map[string]bool{}
	for i, ta := range page.Pages {
		if ta.InstallationID == "" || ta.Metric == "" {
			return nil, fmt.Errorf("%w: answer %d: no installation or metric", errBadAnswer, i)
		}
		recs, err := decodeAnswer(ta)
		if err != nil {
			return nil, fmt.Errorf("%w: answer %d (%s): %w", errBadAnswer, i, ta.Metric, err)
		}
		for _, r := range recs {
			if keys[r.Key] {
				return nil, fmt.Errorf("%w: answer %d: quarter %s repeated", errBadAnswer, i, r.Time.Format(time.RFC3339))
			}
			keys[r.Key] = true
		}
		out = append(out, recs...)
	}
	slices.SortStableFunc(out, func(a, b pollers.Record) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out, nil
}

func decodeAnswer(ta targetAnswer) ([]pollers.Record, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(ta.Body))
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if env.Status != "ok" {
		return nil, fmt.Errorf("status %q", shorten(env.Status))
	}
	var data measurementsData
	dec = json.NewDecoder(bytes.NewReader(env.Data))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if data.Results == nil {
		return nil, errors.New("no results")
	}
	if data.InstallationID != "" && data.InstallationID != ta.InstallationID {
		return nil, errors.New("answer is for another installation")
	}
	if data.Metric != "" && data.Metric != ta.Metric {
		return nil, errors.New("answer is for another metric")
	}
	if data.Interval != "" && data.Interval != "quarters" {
		return nil, errors.New("answer is not in quarters")
	}
	out := make([]pollers.Record, 0, len(*data.Results))
	for j, res := range *data.Results {
		start, err := time.Parse(time.RFC3339, res.Timestamp)
		if err != nil {
			return nil, fmt.Errorf("result %d: timestamp is not RFC 3339", j)
		}
		f, err := res.Value.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, fmt.Errorf("result %d: value is not a number", j)
		}
		start = start.UTC()
		rd := Reading{
			InstallationID: ta.InstallationID, Metric: ta.Metric, Interval: "quarters",
			Start: start, End: start.Add(Quarter), Value: res.Value, Unit: data.Unit,
		}
		b, err := json.Marshal(rd)
		if err != nil {
			return nil, fmt.Errorf("result %d: %w", j, err)
		}
		out = append(out, pollers.Record{
			Key:  ta.InstallationID + "/" + ta.Metric + "/" + start.Format(time.RFC3339),
			Time: start,
			Body: b,
		})
	}
	return out, nil
}

// shorten bounds upstream text quoted in an error.
func shorten(s string) string {
	if len(s) > 40 {
		return strings.ToValidUTF8(s[:40], "") + "…"
	}
	return s
}
