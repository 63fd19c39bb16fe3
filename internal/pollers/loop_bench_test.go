package pollers_test

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/publish"
)

// unchangedJob is a job whose upstream serves n records, prebuilt, in one page, and a
// runner whose seen-store already holds every one of them: each poll checks n records
// and publishes none.
func unchangedJob(tb testing.TB, n int) (*pollers.Runner, *pollers.Job) {
	tb.Helper()
	recs := make([]pollers.Record, n)
	for i := range recs {
		recs[i] = pollers.Record{
			Key: "k" + strconv.Itoa(i), Time: t0.Add(time.Duration(i) * time.Second),
			Body: []byte(`{"id":"k` + strconv.Itoa(i) + `","v":1}`),
		}
	}
	ds := &pollers.Dataset{
		Source: "bench", Name: "unchanged", Cadence: time.Minute, LookBack: 24 * time.Hour, Backfill: 24 * time.Hour,
		Request: func(pollers.Partition, pollers.Window) (string, url.Values) { return "/", nil },
		Decode:  func([]byte) ([]pollers.Record, error) { return recs, nil },
	}
	job := &pollers.Job{Dataset: ds, Partition: pollers.Partition{ID: "p"}, Fetcher: staticFetcher{}}
	seen := publish.NewMemorySeen()
	entries := make([]publish.SeenEntry, n)
	for i, r := range recs {
		entries[i] = publish.SeenEntry{KeyHash: publish.KeyHash(r.Key), ContentHash: publish.ContentHash(r.Body)}
	}
	if err := seen.Commit(context.Background(), job.ID(), entries); err != nil {
		tb.Fatal(err)
	}
	now := t0.Add(24 * time.Hour)
	r := &pollers.Runner{
		Cursors: pollers.NewMemoryCursors(), Seen: seen, // no Publisher: nothing may be published
		Prefix: "energy", Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
	}
	return r, job
}

type staticFetcher struct{}

func (staticFetcher) Get(context.Context, string, url.Values) ([]byte, error) {
	return []byte("[]"), nil
}

// TestUnchangedRepollAllocatesNothingPerRecord: a poll of 10,000 unchanged records
// allocates exactly what a poll of 10 does (the per-page and per-poll work), so the
// dedupe hit path of the real loop allocates nothing per record.
func TestUnchangedRepollAllocatesNothingPerRecord(t *testing.T) {
	allocs := map[int]float64{}
	for _, n := range []int{10, 10_000} {
		r, job := unchangedJob(t, n)
		ctx := context.Background()
		allocs[n] = testing.AllocsPerRun(20, func() {
			res, err := r.Poll(ctx, job)
			if err != nil || res.Published != 0 || res.Deduplicated != n {
				t.Fatalf("poll: %+v, %v", res, err)
			}
		})
	}
	if allocs[10_000] > allocs[10] {
		t.Fatalf("a poll of 10,000 unchanged records allocates %v times, one of 10 records %v: the dedupe hit path allocates",
			allocs[10_000], allocs[10])
	}
}

// BenchmarkUnchangedRepoll: one op is one unchanged record checked by the real loop.
func BenchmarkUnchangedRepoll(b *testing.B) {
	const n = 100_000
	r, job := unchangedJob(b, n)
	ctx := context.Background()
	b.ReportAllocs()
	polls := 0
	for b.Loop() {
		if _, err := r.Poll(ctx, job); err != nil {
			b.Fatal(err)
		}
		polls++
	}
	b.ReportMetric(float64(polls*n)/b.Elapsed().Seconds(), "records/s")
}
