package sandbox

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
)

// NET2GRID readings generation and the energy-measurements endpoint; the wire format is
// described at the top of net2grid.go.

const n2gQuarter = 15 * time.Minute

// NET2GRIDMetrics are the metrics the fake serves.
var NET2GRIDMetrics = []string{"electricity-offtake", "electricity-feedin", "gas"}

var n2gIntervals = map[string]time.Duration{"quarters": n2gQuarter, "hours": time.Hour, "days": 24 * time.Hour}

// n2gReading is one interval of an energy-measurements answer.
type n2gReading struct {
	Timestamp string `json:"timestamp"`
	Value     int64  `json:"value"`
}

type n2gMeasurements struct {
	InstallationID string       `json:"installation_id"`
	Metric         string       `json:"metric"`
	Feed           string       `json:"feed"`
	Interval       string       `json:"interval"`
	Unit           string       `json:"unit"`
	Results        []n2gReading `json:"results"`
}

func (f *NET2GRID) measurements(w http.ResponseWriter, r *http.Request, u *n2gUser) {
	metric, feed, interval := r.PathValue("metric"), r.PathValue("feed"), r.PathValue("interval")
	if !slices.Contains(NET2GRIDMetrics, metric) {
		n2gError(w, http.StatusBadRequest, "unknown metric")
		return
	}
	if feed != "real-time" {
		n2gError(w, http.StatusBadRequest, "unknown feed")
		return
	}
	step, ok := n2gIntervals[interval]
	if !ok {
		n2gError(w, http.StatusBadRequest, "unknown interval (quarters, hours or days)")
		return
	}
	from, err := n2gParseDate(r.PathValue("start"), false)
	if err != nil {
		n2gError(w, http.StatusBadRequest, "startDate: "+err.Error())
		return
	}
	to, err := n2gParseDate(r.PathValue("end"), true)
	if err != nil {
		n2gError(w, http.StatusBadRequest, "endDate: "+err.Error())
		return
	}
	if !from.Before(to) {
		n2gError(w, http.StatusBadRequest, "startDate must be before endDate")
		return
	}
	inst := u.installs[0]
	if id := r.URL.Query().Get("installation_id"); id != "" {
		i := slices.IndexFunc(u.installs, func(in n2gInstallation) bool { return in.ID == id })
		if i < 0 {
			n2gError(w, http.StatusNotFound, "installation not found")
			return
		}
		inst = u.installs[i]
	}
	from = from.Truncate(step)
	if n := int64(to.Sub(from)+step-1) / int64(step); n > int64(f.opts.MaxValues) {
		// As the CE-API does for power history: too many values, start moved forward silently.
		f.Counters.Inc("values_truncated")
		from = to.Add(-time.Duration(f.opts.MaxValues) * step).Truncate(step)
		if from.Add(time.Duration(f.opts.MaxValues) * step).Before(to) {
			from = from.Add(step)
		}
	}
	out := n2gMeasurements{
		InstallationID: inst.ID, Metric: metric, Feed: feed, Interval: interval,
		Unit: "Wh", Results: []n2gReading{},
	}
	if metric == "gas" {
		out.Unit = "dm3"
	}
	if slices.Contains(inst.Metrics, metric) {
		now := f.opts.Clock.Now()
		for t := from; t.Before(to); t = t.Add(step) {
			var sum int64
			have := false
			for q := t; q.Before(t.Add(step)); q = q.Add(n2gQuarter) {
				if v, ok := f.quarterValue(inst, metric, q, now); ok {
					sum += v
					have = true
				}
			}
			if have {
				out.Results = append(out.Results, n2gReading{Timestamp: t.UTC().Format(time.RFC3339), Value: sum})
			}
		}
	}
	WriteJSON(w, http.StatusOK, n2gOK(out))
}

// n2gParseDate reads YYYY-M-D or YYYY-M-DTHH:MM:SS (UTC, optional Z or offset). A date-only end
// covers the whole day.
func n2gParseDate(s string, end bool) (time.Time, error) {
	if t, err := time.Parse("2006-1-2", s); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	for _, layout := range []string{"2006-1-2T15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("want YYYY-M-D or YYYY-M-DTHH:MM:SS")
}

// DeliveredAt is when the fake first serves the quarter starting at q of a
// high-resolution (batch false) or batch-fed installation.
func (f *NET2GRID) DeliveredAt(batch bool, q time.Time) time.Time {
	end := q.Add(n2gQuarter)
	if !batch {
		return end
	}
	b := end.Truncate(f.opts.BatchEvery)
	if b.Before(end) {
		b = b.Add(f.opts.BatchEvery)
	}
	return b.Add(f.opts.BatchDelay)
}

// quarterValue is the value of one quarter as served at now, and whether it is served yet.
func (f *NET2GRID) quarterValue(inst n2gInstallation, metric string, q time.Time, now time.Time) (int64, bool) {
	delivered := f.DeliveredAt(inst.Resolution == "batch", q)
	if now.Before(delivered) {
		return 0, false
	}
	ts := fmt.Sprint(q.Unix())
	h := n2gHash(f.opts.Seed, "value", inst.ID, metric, ts)
	u := float64(h>>11) / float64(1<<53)
	hour := float64(q.UTC().Hour()) + float64(q.UTC().Minute())/60
	var v float64
	switch metric {
	case "electricity-offtake":
		base := 40.0
		switch {
		case hour >= 7 && hour < 9:
			base = 120
		case hour >= 9 && hour < 17:
			base = 80
		case hour >= 17 && hour < 23:
			base = 180
		}
		v = base + 60*u
	case "electricity-feedin":
		if hour >= 6 && hour < 20 {
			v = 300 * math.Sin(math.Pi*(hour-6)/14) * (0.5 + u/2)
		}
	case "gas":
		v = 20 + 80*u
		if (hour >= 6 && hour < 9) || (hour >= 17 && hour < 22) {
			v += 60
		}
	}
	val := int64(math.Round(v))
	// About one quarter in forty is revised once, 1 to 48 hours after its delivery.
	rh := n2gHash(f.opts.Seed, "revision", inst.ID, metric, ts)
	if rh%40 == 0 {
		at := delivered.Add(time.Duration(1+(rh/40)%48) * time.Hour)
		if !now.Before(at) {
			val += int64(1 + (rh/2000)%25)
		}
	}
	return val, true
}

// RevisedAt reports when the quarter starting at q of installation id and metric is
// revised, or false when it never is; tests use it to move the clock past a revision.
func (f *NET2GRID) RevisedAt(email, id, metric string, q time.Time) (time.Time, bool) {
	rh := n2gHash(f.opts.Seed, "revision", id, metric, fmt.Sprint(q.Unix()))
	if rh%40 != 0 {
		return time.Time{}, false
	}
	return f.DeliveredAt(f.BatchFed(email, id), q).Add(time.Duration(1+(rh/40)%48) * time.Hour), true
}
