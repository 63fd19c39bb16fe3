package pollers_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/publish"
)

// TestDeepReReadCatchesLateRevisionsOnce: a revision older than the short look-back (a
// monthly final) is missed by the frequent polls and published, exactly once, by the next
// deep re-read; the deep re-reads in between and after publish nothing else, so the
// seen-store remembers as far back as the deep look-back, however rarely it runs.
func TestDeepReReadCatchesLateRevisionsOnce(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	ds := job.Dataset
	ds.LookBack, ds.DeepLookBack, ds.DeepEvery, ds.Backfill = time.Hour, 96*time.Hour, 40*time.Hour, 96*time.Hour
	ctx := context.Background()
	api.set("old", t0.Add(-30*time.Hour), 1)
	api.set("recent", t0.Add(-30*time.Minute), 1)
	res, err := env.Poll(ctx, job)
	if err != nil || res.Published != 2 {
		t.Fatalf("first poll (backfill): %+v, %v; want 2 published", res, err)
	}
	if !res.Cursor.Deep.Equal(t0) {
		t.Fatalf("cursor after the backfill: %+v, want the deep read stamped at %s", res.Cursor, t0)
	}
	api.set("old", t0.Add(-30*time.Hour), 2) // the final, far outside the 1-hour look-back
	published := 0
	for range 39 { // hourly polls until the deep re-read is due
		clk.Advance(time.Hour)
		res, err := env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		published += res.Published
	}
	if published != 0 {
		t.Fatalf("short polls published %d, want 0 (the revision is outside their look-back)", published)
	}
	clk.Advance(time.Hour) // t0+40h: deep re-read due
	res, err = env.Poll(ctx, job)
	if err != nil || res.Published != 1 || res.Duplicates != 0 {
		t.Fatalf("deep re-read: %+v, %v; want the final published once, nothing offered twice", res, err)
	}
	// An update of the entity already published, not a new entity: the seen-store still
	// knew "old" although the short polls had not read it for 40 hours.
	evs := env.Events(t)
	if last := evs[len(evs)-1]; last.Header.Get(publish.HeaderSubject) != "old" || last.Header.Get(publish.HeaderChange) != publish.ChangeUpdated {
		t.Fatalf("final published with headers %v, want an update of \"old\"", last.Header)
	}
	if !res.Cursor.Deep.Equal(clk.Now()) {
		t.Fatalf("cursor after the deep re-read: %+v", res.Cursor)
	}
	// Four more days of hourly polls, two more deep re-reads (t0+80h, t0+120h): the
	// seen-store is pruned meanwhile (its margin is 24 h), yet "recent" stays inside the
	// deep look-back until t0+95h and must be recognised, not published again as new.
	for range 96 {
		clk.Advance(time.Hour)
		res, err := env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		// Duplicates counts events JetStream dropped by msg-id: a forgotten entity offered
		// again would be dropped there (the test runs well inside the duplicate window)
		// and must not be offered at all.
		if res.Published != 0 || res.Duplicates != 0 {
			t.Fatalf("poll at %s: %+v, want nothing published or offered again", clk.Now().Sub(t0), res)
		}
	}
	if got := assertNoDuplicateIDs(t, env); len(got) != 3 {
		t.Fatalf("%d distinct events, want 3", len(got))
	}
}

// TestDeepReReadAfterAFailedFirstPollGoesNoFurtherThanTheBackfill: a first poll that fails
// half-way leaves its cursor in the past; the next poll, a deep re-read (none has completed
// yet), reads from now − DeepLookBack, not from that cursor − DeepLookBack, which would load
// days that a first poll that succeeded never reads.
func TestDeepReReadAfterAFailedFirstPollGoesNoFurtherThanTheBackfill(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	ds := job.Dataset
	ds.LookBack, ds.DeepLookBack, ds.DeepEvery, ds.Backfill = time.Hour, 96*time.Hour, 12*time.Hour, 96*time.Hour
	var mu sync.Mutex
	requests := 0
	var earliest time.Time
	inner := job.Fetcher
	job.Fetcher = fetcherFunc(func(ctx context.Context, path string, q url.Values) ([]byte, error) {
		mu.Lock()
		requests++
		n := requests
		from, _ := time.Parse(time.RFC3339Nano, q.Get("from"))
		if earliest.IsZero() || from.Before(earliest) {
			earliest = from
		}
		mu.Unlock()
		if n == 5 {
			return nil, errors.New("upstream went away")
		}
		return inner.Get(ctx, path, q)
	})
	api.set("a", t0.Add(-90*time.Hour), 1)
	ctx := context.Background()
	if _, err := env.Poll(ctx, job); err == nil {
		t.Fatal("the first poll should have failed at its fifth request")
	}
	clk.Advance(time.Minute)
	mu.Lock()
	earliest = time.Time{}
	mu.Unlock()
	res, err := env.Poll(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(-ds.DeepLookBack); earliest.Before(want) {
		t.Fatalf("the re-read after the failed first poll started at %s, before now − DeepLookBack (%s)", earliest, want)
	}
	if !res.Cursor.Deep.Equal(clk.Now()) {
		t.Fatalf("cursor %+v: the completed re-read should count as the deep read", res.Cursor)
	}
	if got := assertNoDuplicateIDs(t, env); len(got) != 1 {
		t.Fatalf("%d events, want 1", len(got))
	}
}
