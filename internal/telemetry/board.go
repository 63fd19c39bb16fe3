package telemetry

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Job states a poller reports in JobStatus.State. The status page lists failing jobs first.
const (
	JobStateIdle    = "idle"    // waiting for its next due time
	JobStatePolling = "polling" // a poll is running
	JobStateOK      = "ok"      // last poll succeeded
	JobStateFailing = "failing" // last poll failed; LastError says why
	JobStateBlocked = "blocked" // cannot run until an operator acts (e.g. login required)
)

// Token states an auth token source reports in TokenStatus.State.
const (
	TokenStateOK            = "ok"             // renewing unattended
	TokenStateExpiring      = "expiring"       // refresh token close to expiry: plan a login
	TokenStateLoginRequired = "login-required" // an operator must run the interactive login
	TokenStateError         = "error"          // renewal failing for another reason; Detail says why
)

// JobStatus is what one job (source, dataset, partition) last reported.
type JobStatus struct {
	ID           string // unique job id, e.g. "ingrid/operational-notices/abc123"
	Source       string
	Dataset      string
	Partition    string
	LastPoll     time.Time
	LastSuccess  time.Time
	Lag          time.Duration // how far the cursor trails the wall clock
	LastError    string        // empty when the last poll succeeded; never contains a secret
	Published    int64         // events published since start
	Deduplicated int64         // records dropped as already seen since start
	State        string        // one of the JobState constants
}

// Failing reports whether the job needs attention: a failing or blocked state or a last error.
func (s JobStatus) Failing() bool {
	return s.State == JobStateFailing || s.State == JobStateBlocked || s.LastError != ""
}

// QuotaStatus is the use of one upstream's budget in one window (e.g. grex, 1m).
type QuotaStatus struct {
	Upstream string
	Window   string
	Used     int
	Limit    int
}

// Remaining is Limit-Used, never negative.
func (q QuotaStatus) Remaining() int { return max(q.Limit-q.Used, 0) }

// TokenStatus is the state of one credential (source, subject): e.g. grex and its account.
type TokenStatus struct {
	Source        string
	Subject       string // who the token belongs to; e-mail addresses are hashed before display
	State         string // one of the TokenState constants
	AccessExpiry  time.Time
	RefreshExpiry time.Time // zero when the grant has no refresh token (client credentials)
	Detail        string    // operator hint, never a secret
}

// Expiry is the moment an operator has to act by: the refresh token's expiry when there is one,
// otherwise the access token's.
func (t TokenStatus) Expiry() time.Time {
	if !t.RefreshExpiry.IsZero() {
		return t.RefreshExpiry
	}
	return t.AccessExpiry
}

// Component is one readiness entry: a named part of the process and its last problem.
type Component struct {
	Name string
	Err  error // nil when ready
}

// Board is the concurrency-safe status board: pollers write job status to it, quota limiters and
// token sources are read from it on demand, and the status page and the metric gauges read it.
// The zero value is not usable; call NewBoard.
type Board struct {
	mu     sync.RWMutex
	jobs   map[string]JobStatus
	quotas []func() []QuotaStatus
	tokens []func() []TokenStatus
	ready  map[string]error
}

// NewBoard returns an empty board.
func NewBoard() *Board {
	return &Board{jobs: make(map[string]JobStatus), ready: make(map[string]error)}
}

// UpdateJob records the latest status of the job s.ID, replacing the previous one.
func (b *Board) UpdateJob(s JobStatus) {
	b.mu.Lock()
	b.jobs[s.ID] = s
	b.mu.Unlock()
}

// RemoveJob forgets a job, e.g. when its lease moved to another replica.
func (b *Board) RemoveJob(id string) {
	b.mu.Lock()
	delete(b.jobs, id)
	b.mu.Unlock()
}

// Jobs returns a snapshot of every job, failing jobs first, then by source, dataset, partition.
func (b *Board) Jobs() []JobStatus {
	b.mu.RLock()
	out := make([]JobStatus, 0, len(b.jobs))
	for _, j := range b.jobs {
		out = append(out, j)
	}
	b.mu.RUnlock()
	slices.SortFunc(out, func(a, c JobStatus) int {
		if a.Failing() != c.Failing() {
			if a.Failing() {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Source, c.Source), cmp.Compare(a.Dataset, c.Dataset),
			cmp.Compare(a.Partition, c.Partition), cmp.Compare(a.ID, c.ID))
	})
	return out
}

// AddQuotaProvider registers a function the board calls whenever quotas are read (status page,
// metrics scrape). Register once per limiter at start-up; f must be safe for concurrent use and quick.
func (b *Board) AddQuotaProvider(f func() []QuotaStatus) {
	b.mu.Lock()
	b.quotas = append(b.quotas, f)
	b.mu.Unlock()
}

// AddTokenProvider registers a function the board calls whenever token states are read.
// Register once per token source at start-up; f must be safe for concurrent use and quick.
func (b *Board) AddTokenProvider(f func() []TokenStatus) {
	b.mu.Lock()
	b.tokens = append(b.tokens, f)
	b.mu.Unlock()
}

// Quotas calls every quota provider and returns their answers sorted by upstream and window.
func (b *Board) Quotas() []QuotaStatus {
	b.mu.RLock()
	providers := slices.Clone(b.quotas)
	b.mu.RUnlock()
	var out []QuotaStatus
	for _, f := range providers { // outside the lock: a provider may take its own locks
		out = append(out, f()...)
	}
	slices.SortFunc(out, func(a, c QuotaStatus) int {
		return cmp.Or(cmp.Compare(a.Upstream, c.Upstream), cmp.Compare(a.Window, c.Window))
	})
	return out
}

// Tokens calls every token provider and returns their answers, states needing action first.
func (b *Board) Tokens() []TokenStatus {
	b.mu.RLock()
	providers := slices.Clone(b.tokens)
	b.mu.RUnlock()
	var out []TokenStatus
	for _, f := range providers {
		out = append(out, f()...)
	}
	slices.SortFunc(out, func(a, c TokenStatus) int {
		aok, cok := a.State == TokenStateOK, c.State == TokenStateOK
		if aok != cok {
			if cok {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Source, c.Source), cmp.Compare(a.Subject, c.Subject))
	})
	return out
}

// SetReady records whether a component (e.g. "nats", "stream", "config") is ready; err nil means
// ready. /readyz answers 200 only when every component set here is ready. Register a component
// with a "starting" error early so the pod is not ready before it has connected.
func (b *Board) SetReady(component string, err error) {
	b.mu.Lock()
	b.ready[component] = err
	b.mu.Unlock()
}

// Readiness returns every component sorted by name.
func (b *Board) Readiness() []Component {
	b.mu.RLock()
	out := make([]Component, 0, len(b.ready))
	for name, err := range b.ready {
		out = append(out, Component{Name: name, Err: err})
	}
	b.mu.RUnlock()
	slices.SortFunc(out, func(a, c Component) int { return cmp.Compare(a.Name, c.Name) })
	return out
}
