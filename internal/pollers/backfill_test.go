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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
)

// bfRec is one record of the backfill tests' upstream.
type bfRec struct {
	ID string    `json:"id"`
	T  time.Time `json:"t"`
}

// bfAPI serves a fixed record set filtered by [from, to) and, with top, keyset paged.
type bfAPI struct {
	recs     []bfRec // ordered by time, then id
	requests atomic.Int64
	url      string
}

var bfT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// newBfAPI serves one record every 6 hours over 12 days from bfT0.
func newBfAPI(t *testing.T) *bfAPI {
	t.Helper()
	a := &bfAPI{}
	for i := range 12 * 4 {
		a.recs = append(a.recs, bfRec{ID: fmt.Sprintf("r%03d", i), T: bfT0.Add(time.Duration(i) * 6 * time.Hour)})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		q := r.URL.Query()
		from, _ := time.Parse(time.RFC3339Nano, q.Get("from"))
		to, _ := time.Parse(time.RFC3339Nano, q.Get("to"))
		out := []bfRec{}
		for _, rec := range a.recs {
			if !rec.T.Before(from) && rec.T.Before(to) {
				out = append(out, rec)
			}
		}
		if top, _ := strconv.Atoi(q.Get("top")); top > 0 {
			skip, _ := strconv.Atoi(q.Get("skip"))
			out = out[min(skip, len(out)):min(skip+top, len(out))]
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(srv.Close)
	a.url = srv.URL
	return a
}

type bfFetcher struct{ base string }

func (f bfFetcher) Get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return nil, err
	}
	return raw, nil
}

func bfJob(a *bfAPI, pageSize int) *pollers.Job {
	ds := &pollers.Dataset{
		Source: "test", Name: "history", Cadence: time.Minute, LookBack: time.Hour, Backfill: time.Hour,
		MaxSpan: 24 * time.Hour, PageSize: pageSize,
		Request: func(_ pollers.Partition, w pollers.Window) (string, url.Values) {
			q := url.Values{"from": {w.From.Format(time.RFC3339Nano)}, "to": {w.To.Format(time.RFC3339Nano)}}
			if w.Top > 0 {
				q.Set("top", strconv.Itoa(w.Top))
				q.Set("skip", strconv.Itoa(w.Skip))
			}
			return "/history", q
		},
		Decode: func(body []byte) ([]pollers.Record, error) {
			var recs []bfRec
			if err := json.Unmarshal(body, &recs); err != nil {
				return nil, err
			}
			out := make([]pollers.Record, len(recs))
			for i, r := range recs {
				b, _ := json.Marshal(r)
				out[i] = pollers.Record{Key: r.ID, Time: r.T, Body: b}
			}
			return out, nil
		},
	}
	return &pollers.Job{Dataset: ds, Partition: pollers.Partition{ID: "p1"}, Fetcher: bfFetcher{a.url}}
}

// storedKeys returns the ce-subject of every stored event, failing on a repeated event id.
func storedKeys(t *testing.T, env *pollertest.Env) []string {
	t.Helper()
	seen := map[string]bool{}
	var keys []string
	for _, e := range env.Events(t) {
		id := e.Header.Get(publish.HeaderID)
		if seen[id] {
			t.Errorf("event %s stored twice", id)
		}
		seen[id] = true
		keys = append(keys, e.Header.Get(publish.HeaderSubject))
	}
	sort.Strings(keys)
	return keys
}

func wantKeys(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("r%03d", i))
	}
	return out
}

func equalKeys(t *testing.T, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored keys\n got %v\nwant %v", got, want)
	}
}

func TestBackfillPublishesTheRangeInWindowsWithProgress(t *testing.T) {
	t.Parallel()
	a := newBfAPI(t)
	env := pollertest.New(t)
	job := bfJob(a, 0)
	var progress []pollers.BackfillProgress
	from, to := bfT0.Add(24*time.Hour), bfT0.Add(11*24*time.Hour) // 10 days
	res, err := env.Runner.Backfill(context.Background(), job, pollers.BackfillOptions{
		From: from, To: to,
		OnProgress: func(p pollers.BackfillProgress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	equalKeys(t, storedKeys(t, env), wantKeys(4, 44))
	if res.Windows != 10 || a.requests.Load() != 10 || res.Published != 40 {
		t.Errorf("windows %d, requests %d, published %d; want 10, 10, 40", res.Windows, a.requests.Load(), res.Published)
	}
	if len(progress) != 11 || progress[0].Done != 0 || progress[10].Done != 10 || progress[10].Total != 10 || progress[10].Covered != 1 {
		t.Errorf("progress: %d reports, first %+v, last %+v", len(progress), progress[0], progress[len(progress)-1])
	}
	for i := 1; i < len(progress); i++ {
		if progress[i].Done != i || progress[i].ETA < 0 {
			t.Errorf("report %d: %+v", i, progress[i])
		}
	}
}

func TestBackfillNeverMovesTheLiveCursor(t *testing.T) {
	t.Parallel()
	a := newBfAPI(t)
	env := pollertest.New(t)
	job := bfJob(a, 0)
	ctx := context.Background()
	live := pollers.Cursor{Mark: bfT0.Add(11 * 24 * time.Hour)}
	if err := env.Cursors.Save(ctx, job.ID(), live); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Runner.Backfill(ctx, job, pollers.BackfillOptions{From: bfT0, To: bfT0.Add(5 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := env.Cursors.Load(ctx, job.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Mark.Equal(live.Mark) || got.Skip != live.Skip {
		t.Fatalf("live cursor moved: %+v, want %+v", got, live)
	}
	bf, err := env.Cursors.Load(ctx, pollers.BackfillKey(job.ID(), bfT0, bfT0.Add(5*24*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if !bf.Mark.Equal(bfT0.Add(5 * 24 * time.Hour)) {
		t.Fatalf("backfill cursor %+v, want the range's end", bf)
	}
}

func TestBackfillResumesAfterInterruption(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		pageSize int
	}{
		{"time windows", 0},
		{"keyset pages", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := newBfAPI(t)
			env := pollertest.New(t)
			job := bfJob(a, tc.pageSize)
			from, to := bfT0, bfT0.Add(10*24*time.Hour)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			first, err := env.Runner.Backfill(ctx, job, pollers.BackfillOptions{
				From: from, To: to,
				OnProgress: func(p pollers.BackfillProgress) {
					if p.Covered >= 0.4 {
						cancel()
					}
				},
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted backfill: err %v, want context.Canceled", err)
			}
			if first.Published == 0 || first.Published >= 40 {
				t.Fatalf("interrupted backfill published %d, want some of 40", first.Published)
			}
			second, err := env.Runner.Backfill(context.Background(), job, pollers.BackfillOptions{From: from, To: to})
			if err != nil {
				t.Fatal(err)
			}
			if !second.Progress.Resumed {
				t.Error("second run did not resume from the backfill cursor")
			}
			if second.Published+second.Deduplicated > 40-first.Published+tc.pageSize {
				t.Errorf("second run re-read too much: published %d deduplicated %d after %d", second.Published, second.Deduplicated, first.Published)
			}
			equalKeys(t, storedKeys(t, env), wantKeys(0, 40))

			// A third run of a finished range makes no request.
			before := a.requests.Load()
			third, err := env.Runner.Backfill(context.Background(), job, pollers.BackfillOptions{From: from, To: to})
			if err != nil || third.Windows != 0 || a.requests.Load() != before {
				t.Fatalf("finished range re-run: %+v, %v, %d requests", third, err, a.requests.Load()-before)
			}
		})
	}
}

func TestBackfillPublishesNothingAlreadyPolled(t *testing.T) {
	t.Parallel()
	a := newBfAPI(t)
	env := pollertest.New(t, pollertest.WithNow(func() time.Time { return bfT0.Add(10 * 24 * time.Hour) }))
	job := bfJob(a, 0)
	job.Dataset.Backfill = 5 * 24 * time.Hour // the live job starts at day 5
	ctx := context.Background()
	if _, err := env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	res, err := env.Runner.Backfill(ctx, job, pollers.BackfillOptions{From: bfT0, To: bfT0.Add(10 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 20 || res.Deduplicated != 20 {
		t.Errorf("backfill published %d and deduplicated %d, want 20 and 20", res.Published, res.Deduplicated)
	}
	equalKeys(t, storedKeys(t, env), wantKeys(0, 40))
}

func TestBackfillKeysetStopsAtTheRangeEnd(t *testing.T) {
	t.Parallel()
	a := newBfAPI(t)
	env := pollertest.New(t)
	job := bfJob(a, 5)
	if _, err := env.Runner.Backfill(context.Background(), job, pollers.BackfillOptions{From: bfT0.Add(24 * time.Hour), To: bfT0.Add(3 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	equalKeys(t, storedKeys(t, env), wantKeys(4, 12))
}

func TestBackfillRejectsABadRange(t *testing.T) {
	t.Parallel()
	env := pollertest.New(t)
	job := bfJob(&bfAPI{url: "http://127.0.0.1:1"}, 0)
	for _, tc := range []struct {
		name     string
		from, to time.Time
	}{
		{"empty", bfT0, bfT0},
		{"inverted", bfT0.Add(time.Hour), bfT0},
		{"no start", time.Time{}, bfT0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.Runner.Backfill(context.Background(), job, pollers.BackfillOptions{From: tc.from, To: tc.to})
			if !errors.Is(err, pollers.ErrBadRange) {
				t.Fatalf("err %v, want ErrBadRange", err)
			}
		})
	}
}

func TestQuotaETA(t *testing.T) {
	t.Parallel()
	grex := func(usedMin, usedHour int) []quota.WindowUsage {
		return []quota.WindowUsage{
			{Limit: 100, Per: time.Minute, Used: usedMin, Remaining: 100 - usedMin},
			{Limit: 500, Per: time.Hour, Used: usedHour, Remaining: 500 - usedHour},
		}
	}
	for _, tc := range []struct {
		name     string
		requests int
		usage    []quota.WindowUsage
		want     time.Duration
	}{
		{"no limit", 1000, nil, 0},
		{"fits what is left", 50, grex(0, 0), 0},
		{"minute window decides", 300, grex(0, 0), 2 * time.Minute},
		{"hour window decides", 1500, grex(0, 0), 2 * time.Hour},
		{"hour used up", 100, grex(0, 500), 12 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pollers.QuotaETA(tc.requests, tc.usage); got != tc.want {
				t.Fatalf("QuotaETA(%d) = %v, want %v", tc.requests, got, tc.want)
			}
		})
	}
}
