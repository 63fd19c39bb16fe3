package pollers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeAPI is a minimal upstream: records with an id, a time and a value, served as a
// JSON array filtered by window (from/to) or keyset (from/skip/top).
type fakeAPI struct {
	mu   sync.Mutex
	recs map[string]fakeRec
	bad  bool
	srv  *httptest.Server
}

type fakeRec struct {
	ID string    `json:"id"`
	T  time.Time `json:"t"`
	V  int       `json:"v"`
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{recs: map[string]fakeRec{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) set(id string, t time.Time, v int) {
	f.mu.Lock()
	f.recs[id] = fakeRec{id, t, v}
	f.mu.Unlock()
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bad {
		_, _ = w.Write([]byte(`[{"id": "x", "t": `)) // truncated
		return
	}
	from, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("from"))
	to, _ := time.Parse(time.RFC3339Nano, r.URL.Query().Get("to"))
	var out []fakeRec
	for _, rec := range f.recs {
		if !rec.T.Before(from) && rec.T.Before(to) {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].T.Equal(out[j].T) {
			return out[i].T.Before(out[j].T)
		}
		return out[i].ID < out[j].ID
	})
	if top, _ := strconv.Atoi(r.URL.Query().Get("top")); top > 0 {
		skip, _ := strconv.Atoi(r.URL.Query().Get("skip"))
		out = out[min(skip, len(out)):min(skip+top, len(out))]
	}
	_ = json.NewEncoder(w).Encode(out)
}

type httpFetcher struct{ base string }

func (h httpFetcher) Get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.base+path+"?"+q.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return raw, nil
}

func decodeFake(body []byte) ([]pollers.Record, error) {
	var recs []fakeRec
	if err := json.Unmarshal(body, &recs); err != nil {
		return nil, err
	}
	out := make([]pollers.Record, len(recs))
	for i, r := range recs {
		b, _ := json.Marshal(r)
		out[i] = pollers.Record{Key: r.ID, Time: r.T, Body: b}
	}
	return out, nil
}

func testDataset(pageSize int) *pollers.Dataset {
	return &pollers.Dataset{
		Source: "test", Name: "things", Cadence: time.Minute, LookBack: time.Hour, Backfill: 24 * time.Hour,
		MaxSpan: 6 * time.Hour, PageSize: pageSize,
		Request: func(p pollers.Partition, w pollers.Window) (string, url.Values) {
			q := url.Values{"from": {w.From.Format(time.RFC3339Nano)}, "to": {w.To.Format(time.RFC3339Nano)}}
			if w.Top > 0 {
				q.Set("top", strconv.Itoa(w.Top))
				q.Set("skip", strconv.Itoa(w.Skip))
			}
			return "/things", q
		},
		Decode: decodeFake,
	}
}

var t0 = time.Date(2026, 3, 29, 12, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(t *testing.T, pageSize int) (*fakeAPI, *pollertest.Env, *pollers.Job, *clock) {
	t.Helper()
	api := newFakeAPI(t)
	clk := &clock{t: t0}
	env := pollertest.New(t, pollertest.WithNow(clk.Now))
	job := &pollers.Job{Dataset: testDataset(pageSize), Partition: pollers.Partition{ID: "P.1"}, Fetcher: httpFetcher{api.srv.URL}}
	return api, env, job, clk
}

func ids(t *testing.T, env *pollertest.Env) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, e := range env.Events(t) {
		out[e.Header.Get(publish.HeaderID)]++
		if e.Header.Get(publish.HeaderMsgID) != e.Header.Get(publish.HeaderID) {
			t.Fatalf("Nats-Msg-Id %q != ce-id %q", e.Header.Get(publish.HeaderMsgID), e.Header.Get(publish.HeaderID))
		}
	}
	return out
}

func assertNoDuplicateIDs(t *testing.T, env *pollertest.Env) map[string]int {
	t.Helper()
	got := ids(t, env)
	for id, n := range got {
		if n != 1 {
			t.Errorf("event id %s stored %d times", id, n)
		}
	}
	return got
}

func TestEveryRecordPublishedOnceAndUnchangedRepollPublishesNothing(t *testing.T) {
	t.Parallel()
	for _, pageSize := range []int{0, 3} {
		t.Run(fmt.Sprintf("pageSize=%d", pageSize), func(t *testing.T) {
			t.Parallel()
			api, env, job, clk := setup(t, pageSize)
			for i := range 10 {
				api.set(fmt.Sprintf("r%02d", i), t0.Add(-time.Duration(i+1)*time.Hour), i)
			}
			ctx := context.Background()
			res, err := env.Poll(ctx, job)
			if err != nil {
				t.Fatal(err)
			}
			if res.Published != 10 {
				t.Fatalf("first poll published %d, want 10 (%+v)", res.Published, res)
			}
			clk.Advance(time.Minute)
			res, err = env.Poll(ctx, job)
			if err != nil {
				t.Fatal(err)
			}
			if res.Published != 0 {
				t.Fatalf("re-poll of unchanged data published %d", res.Published)
			}
			if got := assertNoDuplicateIDs(t, env); len(got) != 10 {
				t.Fatalf("stream holds %d ids, want 10", len(got))
			}
			ev := env.Events(t)[0]
			if ev.Subject != "energy.test.things.p_2e1" {
				t.Errorf("subject %q", ev.Subject)
			}
			for _, h := range []string{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject", "ce-time", "content-type"} {
				if ev.Header.Get(h) == "" {
					t.Errorf("header %s missing", h)
				}
			}
		})
	}
}

func TestChangedRecordPublishesNewRevision(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	api.set("a", t0.Add(-time.Hour), 1)
	api.set("b", t0.Add(-time.Hour), 1)
	ctx := context.Background()
	if _, err := env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	api.set("a", t0.Add(-time.Hour), 2) // revised inside the look-back
	clk.Advance(time.Minute)
	res, err := env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 1 || res.Deduplicated != 1 {
		t.Fatalf("revision poll: %+v, want 1 published and 1 deduplicated", res)
	}
	evs := env.Events(t)
	last := evs[len(evs)-1]
	if last.Header.Get(publish.HeaderSubject) != "a" || last.Header.Get(publish.HeaderChange) != publish.ChangeUpdated {
		t.Fatalf("revision event headers %v", last.Header)
	}
	if got := assertNoDuplicateIDs(t, env); len(got) != 3 {
		t.Fatalf("want 3 distinct ids, got %d", len(got))
	}
}

// failingSeen simulates a crash after the acks but before the seen-store and cursor are
// saved: Commit fails.
type failingSeen struct{ publish.SeenStore }

func (failingSeen) Commit(context.Context, string, []publish.SeenEntry) error {
	return errors.New("simulated crash")
}

func TestCrashBetweenPublishAndCursorSaveReplaysWithoutLossOrDuplicate(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	for i := range 20 {
		api.set(fmt.Sprintf("r%02d", i), t0.Add(-time.Duration(i+1)*time.Hour), i)
	}
	ctx := context.Background()
	crashing := *env.Runner
	crashing.Seen = failingSeen{env.Seen}
	if _, err := crashing.Poll(ctx, job); err == nil {
		t.Fatal("poll with a crashing seen-store succeeded")
	}
	if c, _ := env.Cursors.Load(ctx, job.ID()); !c.Mark.IsZero() {
		t.Fatalf("cursor advanced to %v although the page never completed", c.Mark)
	}
	// "Restart": a new pipeline on the same server, with nothing in memory.
	restarted := pollertest.New(t, pollertest.WithServer(env.NATS), pollertest.WithNow(clk.Now))
	res, err := restarted.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates == 0 {
		t.Fatalf("replay should have hit JetStream's duplicate window: %+v", res)
	}
	if got := assertNoDuplicateIDs(t, restarted); len(got) != 20 {
		t.Fatalf("stream holds %d ids after replay, want 20", len(got))
	}
}

func TestCursorNeverPassesUnackedEvent(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	ctx := context.Background()
	// A stream that refuses new messages past 5: the 6th publish of the first window fails.
	cfg := env.Stream.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 5, jetstream.DiscardNew
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		api.set(fmt.Sprintf("r%02d", i), t0.Add(-23*time.Hour+time.Duration(i)*time.Minute), i)
	}
	if _, err := env.Poll(ctx, job); err == nil {
		t.Fatal("poll succeeded although the stream refused events")
	}
	if c, _ := env.Cursors.Load(ctx, job.ID()); !c.Mark.IsZero() {
		t.Fatalf("cursor moved to %v past unacknowledged events", c.Mark)
	}
	cfg.MaxMsgs = -1
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if _, err := env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	if got := assertNoDuplicateIDs(t, env); len(got) != 8 {
		t.Fatalf("stream holds %d ids, want all 8", len(got))
	}
}

func TestBadPageDoesNotAdvanceCursor(t *testing.T) {
	t.Parallel()
	api, env, job, _ := setup(t, 0)
	api.set("a", t0.Add(-time.Hour), 1)
	api.bad = true
	ctx := context.Background()
	_, err := env.Poll(ctx, job)
	if err == nil {
		t.Fatal("bad page accepted")
	}
	if c, _ := env.Cursors.Load(ctx, job.ID()); !c.Mark.IsZero() {
		t.Fatalf("cursor advanced on a bad page: %v", c)
	}
	if n := len(env.Events(t)); n != 0 {
		t.Fatalf("%d events from a bad page", n)
	}
}

func TestRecordKeysAreValidated(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		rec  pollers.Record
	}{
		{"empty key", pollers.Record{Key: "", Body: []byte(`{}`)}},
		{"invalid utf-8", pollers.Record{Key: "a\xff", Body: []byte(`{}`)}},
		{"body not json", pollers.Record{Key: "k", Body: []byte(`{`)}},
		{"control character", pollers.Record{Key: "k\x00", Body: []byte(`{}`)}},
		{"line feed", pollers.Record{Key: "k\nNats-Msg-Id: x", Body: []byte(`{}`)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, env, job, _ := setup(t, 0)
			ds := *job.Dataset
			ds.Decode = func([]byte) ([]pollers.Record, error) { return []pollers.Record{tc.rec}, nil }
			job.Dataset = &ds
			_, err := env.Poll(context.Background(), job)
			if !errors.Is(err, pollers.ErrBadPage) {
				t.Fatalf("err = %v, want ErrBadPage", err)
			}
		})
	}
}

func TestKeysetPagingFollowsChangesWithoutLoss(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 4)
	// Ten records sharing one timestamp and more after: pages must walk through ties.
	for i := range 10 {
		api.set(fmt.Sprintf("tie%02d", i), t0.Add(-2*time.Hour), i)
	}
	for i := range 7 {
		api.set(fmt.Sprintf("later%02d", i), t0.Add(-time.Hour+time.Duration(i)*time.Minute), i)
	}
	ctx := context.Background()
	res, err := env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 17 {
		t.Fatalf("published %d, want 17 (%+v)", res.Published, res)
	}
	api.set("tie03", t0.Add(30*time.Second), 99) // a change moves a record to the end
	clk.Advance(time.Minute)
	res, err = env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 1 {
		t.Fatalf("change poll published %d, want 1", res.Published)
	}
	if got := assertNoDuplicateIDs(t, env); len(got) != 18 {
		t.Fatalf("%d ids, want 18", len(got))
	}
}

// TestKeysetPagingSurvivesATiedRecordChangingBetweenPages: a record tied at the page
// boundary's time changes between two pages of one poll; the offsets shift down, and the
// record right after the boundary must still be published.
func TestKeysetPagingSurvivesATiedRecordChangingBetweenPages(t *testing.T) {
	t.Parallel()
	api, env, job, _ := setup(t, 4)
	tie := t0.Add(-2 * time.Hour)
	for i := range 10 {
		api.set(fmt.Sprintf("tie%02d", i), tie, i)
	}
	requests := 0
	ds := *job.Dataset
	inner := job.Fetcher
	job.Dataset = &ds
	job.Fetcher = fetcherFunc(func(ctx context.Context, path string, q url.Values) ([]byte, error) {
		requests++
		if requests == 2 { // after the first page: tie01 (already read) moves out of the tie
			api.set("tie01", t0.Add(-time.Hour), 100)
		}
		return inner.Get(ctx, path, q)
	})
	if _, err := env.Poll(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, e := range env.Events(t) {
		keys[e.Header.Get(publish.HeaderSubject)] = true
	}
	for i := range 10 {
		if k := fmt.Sprintf("tie%02d", i); !keys[k] {
			t.Errorf("%s never published (keys %v)", k, keys)
		}
	}
	assertNoDuplicateIDs(t, env)
}

type fetcherFunc func(ctx context.Context, path string, q url.Values) ([]byte, error)

func (f fetcherFunc) Get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	return f(ctx, path, q)
}

// TestRecordChangingBackIsPublishedAgain: A → B → A inside the duplicate window must store
// three events; with the content hash alone, the third would reuse A's id and JetStream
// would drop it, leaving B as the last word.
func TestRecordChangingBackIsPublishedAgain(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	ctx := context.Background()
	for i, v := range []int{1, 2, 1} {
		api.set("a", t0.Add(-30*time.Minute), v)
		clk.Advance(time.Minute)
		res, err := env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published != 1 || res.Duplicates != 0 {
			t.Fatalf("revision %d: %+v, want 1 stored", i, res)
		}
	}
	if got := assertNoDuplicateIDs(t, env); len(got) != 3 {
		t.Fatalf("%d ids, want 3", len(got))
	}
}
