package ingrid

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/sandbox"
)

// e2eT0 is 12:00 Paris on the Monday after the spring DST change: the 23-hour gas day
// 2024-03-30 is inside every look-back, and gas day 2024-03-31 is validated at 13:00.
var e2eT0 = time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC)

// e2eAdvance moves the clock far enough for every dataset to have revisions, new versions of
// notices and withdrawals.
const e2eAdvance = 3 * 24 * time.Hour

// e2e is every INGRID job against the sandbox, through the real pipeline on one NATS server.
type e2e struct {
	clock *quota.FakeClock
	fake  *sandbox.INGRID
	srv   *httptest.Server
	env   *pollertest.Env
	jobs  map[string]*pollers.Job

	mu     sync.Mutex
	events []pollertest.Event // every stored event read so far, in sequence order
	next   uint64             // next sequence to read
}

func newE2E(t *testing.T) *e2e {
	t.Helper()
	clock := quota.NewFakeClock(e2eT0)
	fake := sandbox.NewINGRID(sandbox.INGRIDOptions{Clock: clock})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	o := demoOptions(srv.URL)
	o.Clock = clock
	src, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := src.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := &e2e{clock: clock, fake: fake, srv: srv, env: pollertest.New(t, pollertest.WithNow(clock.Now)), jobs: map[string]*pollers.Job{}}
	for _, j := range jobs {
		e.jobs[j.Dataset.Name] = j
	}
	return e
}

// upstream fetches what the fake answers for one request of the job, with a fresh token of
// the test's own, and decodes it with the dataset's decoder.
func (e *e2e) upstream(t *testing.T, job *pollers.Job, w pollers.Window) []pollers.Record {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+sandbox.INGRIDTokenPath, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sandbox.INGRIDDemoClientID, sandbox.INGRIDDemoClientSecret)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	token := decodeAnswer(t, req, &tok, func() string { return tok.AccessToken })
	path, q := job.Dataset.Request(job.Partition, w)
	req, _ = http.NewRequest(http.MethodGet, e.srv.URL+path+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	body := decodeAnswer(t, req, nil, nil)
	recs, err := job.Dataset.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func decodeAnswer(t *testing.T, req *http.Request, v any, pick func() string) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	if v == nil {
		return string(b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
	return pick()
}

// expected returns key → body of every record the poll of job over [from, to) reads,
// request by request as the loop cuts it.
func (e *e2e) expected(t *testing.T, job *pollers.Job, from, to time.Time) map[string]string {
	t.Helper()
	out := map[string]string{}
	for from.Before(to) {
		end := to
		if ms := job.Dataset.MaxSpan; ms > 0 && from.Add(ms).Before(to) {
			end = from.Add(ms)
		}
		for _, r := range e.upstream(t, job, pollers.Window{From: from, To: end}) {
			out[r.Key] = string(r.Body)
		}
		from = end
	}
	return out
}

// published returns the events of job's subject with a sequence above after.
func (e *e2e) published(t *testing.T, job *pollers.Job, after uint64) []pollertest.Event {
	t.Helper()
	subject := publish.Subject("energy", SourceName, job.Dataset.Name, job.Partition.ID)
	var out []pollertest.Event
	for _, ev := range e.allEvents(t) {
		if ev.Seq > after && ev.Subject == subject {
			out = append(out, ev)
		}
	}
	return out
}

// allEvents reads the stream incrementally: env.Events re-reads it whole, which 19 parallel
// checks cannot afford.
func (e *e2e) allEvents(t *testing.T) []pollertest.Event {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx := context.Background()
	last := lastSeq(t, e.env)
	for ; e.next <= last; e.next++ {
		if e.next == 0 {
			continue
		}
		m, err := e.env.Stream.GetMsg(ctx, e.next)
		if err != nil {
			t.Fatalf("event %d: %v", e.next, err)
		}
		e.events = append(e.events, pollertest.Event{Seq: e.next, Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return slices.Clone(e.events)
}

// checkPublished asserts that events are exactly want, one event per record.
func checkPublished(t *testing.T, job *pollers.Job, events []pollertest.Event, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, ev := range events {
		key := ev.Header.Get(publish.HeaderSubject)
		if _, dup := got[key]; dup {
			t.Errorf("key %s published twice in one poll", key)
		}
		got[key] = string(ev.Data)
		if typ := ev.Header.Get(publish.HeaderType); typ != "io.gridstream.ingrid."+job.Dataset.Name {
			t.Errorf("ce-type %q", typ)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev.Header.Get(publish.HeaderTime)); err != nil {
			t.Errorf("ce-time %q", ev.Header.Get(publish.HeaderTime))
		}
	}
	for k, body := range want {
		if got[k] != body {
			t.Errorf("record %s: published %q, want %q", k, got[k], body)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("record %s published but not expected", k)
		}
	}
}

// eachJob runs f for every dataset's job in parallel subtests and waits for them.
func (e *e2e) eachJob(t *testing.T, name string, f func(t *testing.T, job *pollers.Job)) {
	t.Run(name, func(t *testing.T) {
		for _, ds := range Datasets {
			job := e.jobs[ds.Name]
			t.Run(ds.Name, func(t *testing.T) {
				t.Parallel()
				f(t, job)
			})
		}
	})
}

func lastSeq(t *testing.T, env *pollertest.Env) uint64 {
	t.Helper()
	info, err := env.Stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// TestEveryDatasetEndToEnd polls all 19 datasets of one contract against the sandbox through
// the real pipeline, over simulated days.
func TestEveryDatasetEndToEnd(t *testing.T) {
	e := newE2E(t)
	ctx := context.Background()
	var mu sync.Mutex
	firstBodies := map[string]map[string]string{} // dataset → key → last body published

	e.eachJob(t, "first poll publishes every record", func(t *testing.T, job *pollers.Job) {
		want := e.expected(t, job, e2eT0.Add(-job.Dataset.Backfill), e2eT0)
		if len(want) == 0 {
			t.Fatal("the sandbox has no records for the first poll: the test proves nothing")
		}
		res, err := e.env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published != len(want) {
			t.Errorf("published %d, want %d", res.Published, len(want))
		}
		t.Logf("%d requests, published %d", res.Pages, res.Published)
		checkPublished(t, job, e.published(t, job, 0), want)
		mu.Lock()
		firstBodies[job.Dataset.Name] = want
		mu.Unlock()
	})
	if t.Failed() {
		t.FailNow()
	}

	e.eachJob(t, "re-poll publishes nothing", func(t *testing.T, job *pollers.Job) {
		res, err := e.env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published != 0 || res.Records == 0 {
			t.Errorf("re-poll read %d records and published %d", res.Records, res.Published)
		}
	})

	e.clock.Advance(e2eAdvance)
	before := lastSeq(t, e.env)
	e.eachJob(t, "revised values publish one revision per changed record", func(t *testing.T, job *pollers.Job) {
		mu.Lock()
		prev := firstBodies[job.Dataset.Name]
		mu.Unlock()
		read := e.expected(t, job, e2eT0.Add(-job.Dataset.LookBack), e.clock.Now())
		want := map[string]string{}
		revisions := 0
		for k, body := range read {
			if old, ok := prev[k]; ok && old == body {
				continue
			} else if ok {
				revisions++
			}
			want[k] = body
		}
		if revisions == 0 {
			t.Fatalf("no record of the look-back was revised in %v: the test proves nothing", e2eAdvance)
		}
		res, err := e.env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		events := e.published(t, job, before)
		checkPublished(t, job, events, want)
		if res.Published != len(want) {
			t.Errorf("published %d, want %d (%d revisions)", res.Published, len(want), revisions)
		}
		t.Logf("read %d records, published %d: %d revisions and %d new", res.Records, res.Published, revisions, len(want)-revisions)
		updated := 0
		for _, ev := range events {
			if ev.Header.Get(publish.HeaderChange) == publish.ChangeUpdated {
				updated++
			}
		}
		if updated != revisions {
			t.Errorf("%d events marked updated, want %d revisions", updated, revisions)
		}
		again, err := e.env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if again.Published != 0 {
			t.Errorf("re-poll after the revision published %d", again.Published)
		}
	})

	t.Run("withdrawn notices are published as such", func(t *testing.T) {
		for _, ds := range []*pollers.Dataset{OperationalNotices, ConfirmationNotice, ConsolidatedMaintenancePrograms} {
			status := map[string]string{} // notice id → status of its last event
			transitions := 0
			for _, ev := range e.published(t, e.jobs[ds.Name], 0) {
				var n struct {
					Status  string `json:"status"`
					Version int    `json:"version"`
				}
				if err := json.Unmarshal(ev.Data, &n); err != nil {
					t.Fatal(err)
				}
				id := ev.Header.Get(publish.HeaderSubject)
				if prev, ok := status[id]; ok && prev != "withdrawn" && n.Status == "withdrawn" {
					transitions++
					if ev.Header.Get(publish.HeaderChange) != publish.ChangeUpdated {
						t.Errorf("%s %s: withdrawal not marked as an update", ds.Name, id)
					}
				}
				status[id] = n.Status
			}
			if transitions == 0 {
				t.Errorf("%s: no notice seen published and then withdrawn", ds.Name)
			}
		}
	})

	if n := e.fake.Counters.Get("unauthorized.daily-allocations"); n != 0 {
		t.Errorf("the client sent %d requests with an expired token: it should renew before expiry", n)
	}
}

// TestRevokedTokenIsReplacedOnce checks that a 401 from the data API drops the token, fetches
// a new one and retries the request once.
func TestRevokedTokenIsReplacedOnce(t *testing.T) {
	t.Parallel()
	clock := quota.NewFakeClock(e2eT0)
	fake := sandbox.NewINGRID(sandbox.INGRIDOptions{Clock: clock})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	o := demoOptions(srv.URL)
	o.Clock = clock
	o.Datasets = []string{"services"}
	src, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	jobs, _ := src.Jobs(context.Background())
	path, q := Services.Request(jobs[0].Partition, pollers.Window{From: e2eT0.Add(-time.Hour), To: e2eT0})
	get := func() {
		t.Helper()
		if _, err := jobs[0].Fetcher.Get(context.Background(), path, q); err != nil {
			t.Fatal(err)
		}
	}
	get()
	fake.RevokeTokens()
	get()
	if got := fake.Counters.Get("token.issued"); got != 2 {
		t.Errorf("tokens issued %d, want 2", got)
	}
	if got := fake.Counters.Get("unauthorized.services"); got != 1 {
		t.Errorf("401 answers %d, want 1", got)
	}
	if got := fake.Counters.Get("requests.services"); got != 3 {
		t.Errorf("data requests %d, want 3", got)
	}
}

// TestUnusablePageDoesNotAdvanceTheCursor serves an HTML maintenance page once: the poll fails,
// publishes nothing and keeps its cursor, and the next poll reads the window again.
func TestUnusablePageDoesNotAdvanceTheCursor(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	ctx := context.Background()
	job := e.jobs[DailyAllocations.Name]
	e.fake.Faults.Set(DailyAllocations.Name, sandbox.Fault{HTML: true, Count: 1})
	res, err := e.env.Poll(ctx, job)
	if err == nil {
		t.Fatal("a poll on an HTML page succeeded")
	}
	if res.Published != 0 || !res.Cursor.Mark.IsZero() {
		t.Fatalf("failed poll published %d and moved the cursor to %v", res.Published, res.Cursor.Mark)
	}
	res, err = e.env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	want := e.expected(t, job, e2eT0.Add(-job.Dataset.Backfill), e2eT0)
	if res.Published != len(want) || !res.Cursor.Mark.Equal(e2eT0) {
		t.Fatalf("retry published %d of %d, cursor %v", res.Published, len(want), res.Cursor.Mark)
	}
}

// TestHourlyMonthlyFinalsArePublishedByTheDeepReRead: the finals of a month's hourly values
// come out on the 5th of the next month, weeks after the 3-day look-back of the frequent
// polls has passed them. The deep re-read publishes each final once, as an update.
func TestHourlyMonthlyFinalsArePublishedByTheDeepReRead(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	ctx := context.Background()
	job := e.jobs[HourlyMeasures.Name]
	first := e.expected(t, job, e2eT0.Add(-job.Dataset.Backfill), e2eT0)
	res, err := e.env.Poll(ctx, job)
	if err != nil || res.Published != len(first) {
		t.Fatalf("first poll: %+v, %v; want %d published", res, err, len(first))
	}
	// March's finals: 5 April 2024, 12:00 Paris (10:00 UTC). Poll as the scheduler would
	// meanwhile (every few hours here), so the short polls have long passed March.
	finals := time.Date(2024, 4, 5, 10, 0, 0, 0, time.UTC)
	for e.clock.Now().Before(finals.Add(-6 * time.Hour)) {
		e.clock.Advance(5 * time.Hour)
		if _, err := e.env.Poll(ctx, job); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(finals.Add(time.Hour).Sub(e.clock.Now()))
	// What the deep re-read reads, and which of it is new since the first poll or the
	// short polls: March's finals, and the hours since the last poll.
	cur, err := e.env.Cursors.Load(ctx, job.ID())
	if err != nil {
		t.Fatal(err)
	}
	if e.clock.Now().Sub(cur.Deep) < job.Dataset.DeepEvery {
		// The last short poll ran a deep re-read before the finals: wait for the next one.
		e.clock.Advance(job.Dataset.DeepEvery - e.clock.Now().Sub(cur.Deep))
	}
	known := map[string]string{}
	for _, ev := range e.published(t, job, 0) {
		known[ev.Header.Get(publish.HeaderSubject)] = string(ev.Data)
	}
	before := lastSeq(t, e.env)
	read := e.expected(t, job, e.clock.Now().Add(-job.Dataset.DeepLookBack), e.clock.Now())
	want := map[string]string{}
	finalsWanted := 0
	for k, body := range read {
		if known[k] == body {
			continue
		}
		want[k] = body
		if _, ok := known[k]; ok && strings.Contains(body, `"final"`) {
			finalsWanted++
		}
	}
	if finalsWanted == 0 {
		t.Fatal("no hourly value became final: the test proves nothing")
	}
	res, err = e.env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	events := e.published(t, job, before)
	checkPublished(t, job, events, want)
	updated := 0
	for _, ev := range events {
		if ev.Header.Get(publish.HeaderChange) == publish.ChangeUpdated && strings.Contains(string(ev.Data), `"final"`) {
			updated++
		}
	}
	if updated != finalsWanted {
		t.Errorf("%d finals published as updates, want %d", updated, finalsWanted)
	}
	t.Logf("deep re-read: %d requests, %d records, %d published (%d finals)", res.Pages, res.Records, res.Published, updated)
	again, err := e.env.Poll(ctx, job)
	if err != nil || again.Published != 0 {
		t.Fatalf("poll after the deep re-read: %+v, %v; want nothing published", again, err)
	}
}
