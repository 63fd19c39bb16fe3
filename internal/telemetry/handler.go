package telemetry

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// HandlerOptions configures NewHandler.
type HandlerOptions struct {
	Board   *Board
	Metrics http.Handler // served at /metrics; Telemetry.MetricsHandler()
	Version string
	// Ready is an extra readiness check run on every /readyz (e.g. the NATS connection status);
	// nil means none. It gets a context bounded by ReadyTimeout.
	Ready        func(ctx context.Context) error
	ReadyTimeout time.Duration // default 2s
	PageSize     int           // jobs per status page; default 100
	Now          func() time.Time
}

// NewHandler serves /healthz (the process is alive), /readyz (200 when every readiness component
// is ready), /metrics and, at /, the HTML status page.
func NewHandler(opts HandlerOptions) http.Handler {
	if opts.Board == nil {
		opts.Board = NewBoard()
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Second
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &server{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	mux.HandleFunc("GET /{$}", s.status)
	return mux
}

type server struct{ opts HandlerOptions }

// readiness is the outcome of every readiness check plus the token details.
type readiness struct {
	Ready      bool
	Components []componentView
	Details    []string // token problems: shown, but they do not make the pod unready
}

type componentView struct {
	Name, Problem string
}

func (s *server) readiness(ctx context.Context) readiness {
	r := readiness{Ready: true}
	for _, c := range s.opts.Board.Readiness() {
		v := componentView{Name: c.Name}
		if c.Err != nil {
			v.Problem = RedactEmails(c.Err.Error())
			r.Ready = false
		}
		r.Components = append(r.Components, v)
	}
	if s.opts.Ready != nil {
		ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
		defer cancel()
		v := componentView{Name: "check"}
		if err := s.opts.Ready(ctx); err != nil {
			v.Problem = RedactEmails(err.Error())
			r.Ready = false
		}
		r.Components = append(r.Components, v)
	}
	// A login-required or expiring credential stops only its own source: the other sources keep
	// polling, so restarting or unreadying the pod would help nobody. It is reported, not fatal.
	const maxDetails = 20
	var more int
	for _, t := range s.opts.Board.Tokens() {
		if t.State == TokenStateOK {
			continue
		}
		if len(r.Details) == maxDetails {
			more++
			continue
		}
		d := fmt.Sprintf("token %s/%s: %s", t.Source, RedactEmails(t.Subject), t.State)
		if t.Detail != "" {
			d += ": " + RedactEmails(t.Detail)
		}
		r.Details = append(r.Details, d)
	}
	if more > 0 {
		r.Details = append(r.Details, fmt.Sprintf("... and %d more tokens needing attention", more))
	}
	return r
}

func (s *server) readyz(w http.ResponseWriter, req *http.Request) {
	r := s.readiness(req.Context())
	var b strings.Builder
	if r.Ready {
		b.WriteString("ready\n")
	} else {
		b.WriteString("not ready\n")
	}
	for _, c := range r.Components {
		if c.Problem == "" {
			fmt.Fprintf(&b, "ok     %s\n", c.Name)
		} else {
			fmt.Fprintf(&b, "FAIL   %s: %s\n", c.Name, c.Problem)
		}
	}
	for _, d := range r.Details {
		fmt.Fprintf(&b, "detail %s\n", d)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(b.String()))
}

//go:embed status.html.tmpl
var statusHTML string

var statusTemplate = template.Must(template.New("status").Parse(statusHTML))

// maxTokenRows bounds the token table; beyond it only tokens needing attention are listed.
const maxTokenRows = 200

type statusPage struct {
	Version   string
	Now       string
	Readiness readiness
	Quotas    []quotaView
	Tokens    []tokenView
	TokenSum  []tokenSummary
	TokensCut int
	Groups    []groupView
	Jobs      []jobView
	JobsTotal int // jobs matching the filter
	AllJobs   int
	Failing   int
	Attention int // credentials not in state ok
	Filter    jobFilter
	Page      int
	Pages     int
	PrevURL   string
	NextURL   string
}

type jobFilter struct {
	Source, Dataset string
	FailingOnly     bool
}

type quotaView struct {
	Upstream, Window string
	Used, Limit      int
	Percent          int
	Class            string
}

type tokenView struct {
	Source, Subject, State, Detail string
	Access, Refresh                timeView
	Class                          string
}

type tokenSummary struct {
	Source, State string
	Count         int
}

type groupView struct {
	Source, Dataset        string
	Jobs, Failing          int
	MaxLag                 string
	LastPoll               timeView
	Published, Deduplicate int64
	URL                    string
	Class                  string
}

type jobView struct {
	ID, Source, Dataset, Partition, State, LastError string
	LastPoll, LastSuccess                            timeView
	Lag                                              string
	Published, Deduplicated                          int64
	Class                                            string
}

// timeView is a moment shown relative to now, with the absolute time as a tooltip.
type timeView struct{ Rel, Abs string }

func (s *server) timeView(t time.Time) timeView {
	if t.IsZero() {
		return timeView{Rel: "never"}
	}
	d := s.opts.Now().Sub(t)
	rel := humanDuration(d.Abs())
	if d >= 0 {
		rel += " ago"
	} else {
		rel = "in " + rel
	}
	return timeView{Rel: rel, Abs: t.UTC().Format(time.RFC3339)}
}

// expiryView is timeView for an expiry, where zero means unknown or not applicable.
func (s *server) expiryView(t time.Time) timeView {
	if t.IsZero() {
		return timeView{Rel: "-"}
	}
	return s.timeView(t)
}

// humanDuration prints d with at most two units: 3d4h, 2h5m, 4m10s, 12s, 250ms.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

func (s *server) status(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	page := statusPage{
		Version:   s.opts.Version,
		Now:       s.opts.Now().UTC().Format(time.RFC3339),
		Readiness: s.readiness(req.Context()),
		Filter:    jobFilter{Source: q.Get("source"), Dataset: q.Get("dataset"), FailingOnly: q.Get("failing") == "1"},
	}
	for _, qs := range s.opts.Board.Quotas() {
		v := quotaView{Upstream: qs.Upstream, Window: qs.Window, Used: qs.Used, Limit: qs.Limit, Class: "ok"}
		if qs.Limit > 0 {
			v.Percent = min(100, qs.Used*100/qs.Limit)
		}
		switch {
		case v.Percent >= 100:
			v.Class = "bad"
		case v.Percent >= 80:
			v.Class = "warn"
		}
		page.Quotas = append(page.Quotas, v)
	}
	s.fillTokens(&page)
	s.fillJobs(&page, q.Get("page"))

	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, page); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = buf.WriteTo(w)
}

func (s *server) fillTokens(page *statusPage) {
	tokens := s.opts.Board.Tokens() // needing attention first
	type key struct{ source, state string }
	counts := map[key]int{}
	for _, t := range tokens {
		counts[key{t.Source, t.State}]++
		if t.State != TokenStateOK {
			page.Attention++
		}
	}
	for k, n := range counts {
		page.TokenSum = append(page.TokenSum, tokenSummary{Source: k.source, State: k.state, Count: n})
	}
	slices.SortFunc(page.TokenSum, func(a, b tokenSummary) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.State, b.State))
	})
	for i, t := range tokens {
		if i == maxTokenRows {
			page.TokensCut = len(tokens) - i
			break
		}
		class := "ok"
		switch t.State {
		case TokenStateOK:
		case TokenStateExpiring:
			class = "warn"
		default:
			class = "bad"
		}
		page.Tokens = append(page.Tokens, tokenView{
			Source: t.Source, Subject: RedactEmails(t.Subject), State: t.State, Detail: RedactEmails(t.Detail),
			Access: s.expiryView(t.AccessExpiry), Refresh: s.expiryView(t.RefreshExpiry), Class: class,
		})
	}
}

func (s *server) fillJobs(page *statusPage, pageParam string) {
	jobs := s.opts.Board.Jobs() // failing first
	page.AllJobs = len(jobs)
	type key struct{ source, dataset string }
	type acc struct {
		view     groupView
		maxLag   time.Duration
		lastPoll time.Time
	}
	groups := map[key]*acc{}
	var matching []JobStatus
	for _, j := range jobs {
		k := key{j.Source, j.Dataset}
		g := groups[k]
		if g == nil {
			u := url.Values{"source": {j.Source}, "dataset": {j.Dataset}}
			g = &acc{view: groupView{Source: j.Source, Dataset: j.Dataset, URL: "?" + u.Encode(), Class: "ok"}}
			groups[k] = g
		}
		g.view.Jobs++
		if j.Failing() {
			g.view.Failing++
			g.view.Class = "bad"
			page.Failing++
		}
		g.maxLag = max(g.maxLag, j.Lag)
		if j.LastPoll.After(g.lastPoll) {
			g.lastPoll = j.LastPoll
		}
		g.view.Published += j.Published
		g.view.Deduplicate += j.Deduplicated
		if (page.Filter.Source == "" || j.Source == page.Filter.Source) &&
			(page.Filter.Dataset == "" || j.Dataset == page.Filter.Dataset) &&
			(!page.Filter.FailingOnly || j.Failing()) {
			matching = append(matching, j)
		}
	}
	for _, g := range groups {
		g.view.MaxLag = humanDuration(g.maxLag)
		g.view.LastPoll = s.timeView(g.lastPoll)
		page.Groups = append(page.Groups, g.view)
	}
	slices.SortFunc(page.Groups, func(a, b groupView) int {
		if (a.Failing > 0) != (b.Failing > 0) {
			if a.Failing > 0 {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Dataset, b.Dataset))
	})

	page.JobsTotal = len(matching)
	size := s.opts.PageSize
	page.Pages = max(1, (len(matching)+size-1)/size)
	page.Page, _ = strconv.Atoi(pageParam)
	page.Page = min(max(page.Page, 1), page.Pages)
	start := (page.Page - 1) * size
	for _, j := range matching[start:min(start+size, len(matching))] {
		class := "ok"
		if j.Failing() {
			class = "bad"
		}
		page.Jobs = append(page.Jobs, jobView{
			ID: RedactEmails(j.ID), Source: j.Source, Dataset: j.Dataset, Partition: RedactEmails(j.Partition),
			State: j.State, LastError: RedactEmails(j.LastError),
			LastPoll: s.timeView(j.LastPoll), LastSuccess: s.timeView(j.LastSuccess),
			Lag: humanDuration(j.Lag), Published: j.Published, Deduplicated: j.Deduplicated, Class: class,
		})
	}
	link := func(p int) string {
		u := url.Values{"page": {strconv.Itoa(p)}}
		if page.Filter.Source != "" {
			u.Set("source", page.Filter.Source)
		}
		if page.Filter.Dataset != "" {
			u.Set("dataset", page.Filter.Dataset)
		}
		if page.Filter.FailingOnly {
			u.Set("failing", "1")
		}
		return "?" + u.Encode()
	}
	if page.Page > 1 {
		page.PrevURL = link(page.Page - 1)
	}
	if page.Page < page.Pages {
		page.NextURL = link(page.Page + 1)
	}
}
