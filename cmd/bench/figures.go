package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/upstream"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
)

// PageRecords is the number of records in one upstream page of the pipeline figure: a
// NET2GRID user's week of quarters for three metrics (672 × 3).
const PageRecords = 2016

// RepollKeys is the size of the seen-store the unchanged re-poll checks against.
const RepollKeys = 1_000_000

// RepollPage is the page size of the unchanged re-poll.
const RepollPage = 10_000

// fatal fails b and keeps err for the report: testing.Benchmark, which make bench uses,
// drops a failed benchmark's message.
func (e *Env) fatal(b *testing.B, err error) {
	e.mu.Lock()
	e.failure = err
	e.mu.Unlock()
	b.Fatal(err)
}

// Failure is the error of the last benchmark that failed, if any.
func (e *Env) Failure() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failure
}

// BenchRaw is the physical limit of the publish path: async JetStream publishes of
// PayloadSize-byte messages with a Nats-Msg-Id, at most MaxPending in flight, all acked.
// One op is one message.
func (e *Env) BenchRaw(b *testing.B) {
	if err := e.Reset(context.Background()); err != nil {
		e.fatal(b, err)
	}
	js, err := publish.NewJetStream(e.NC, MaxPending)
	if err != nil {
		e.fatal(b, err)
	}
	data := payload()
	run := e.run("raw")
	subject := "energy.bench.raw." + run
	prefix := run + "-"
	b.SetBytes(PayloadSize)
	b.ResetTimer()
	futures := make([]jetstream.PubAckFuture, 0, b.N)
	for i := 0; i < b.N; i++ {
		for {
			f, err := js.PublishAsync(subject, data, jetstream.WithMsgID(prefix+strconv.Itoa(i)), jetstream.WithStallWait(time.Second))
			if err == nil {
				futures = append(futures, f)
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				e.fatal(b, err)
			}
		}
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			e.fatal(b, err)
		}
	}
}

// PipelineWorkers is how many jobs the pipeline figure polls at once: the scheduler's
// default (Scheduler.Workers), which is how one replica runs.
const PipelineWorkers = 8

// BenchPipeline runs the whole pipeline on fresh records, PipelineWorkers jobs at once as
// the scheduler does: HTTP pages from the upstream (through upstream.Client), decode,
// dedupe against the KV seen-store, publish with acks, seen-store commit, KV cursor save
// after each page. One op is one record published.
func (e *Env) BenchPipeline(b *testing.B) { e.benchPipeline(b, PipelineWorkers) }

// BenchPipelineOneJob is BenchPipeline with a single job: the latency-bound worst case,
// where fetch, decode and publish of one job never overlap.
func (e *Env) BenchPipelineOneJob(b *testing.B) { e.benchPipeline(b, 1) }

func (e *Env) benchPipeline(b *testing.B, workers int) {
	if err := e.Reset(context.Background()); err != nil {
		e.fatal(b, err)
	}
	client := upstream.New(upstream.Options{Name: "bench", BaseURL: e.upstream.URL})
	r := &pollers.Runner{
		Publisher: publish.NewPublisher(e.JS), Cursors: e.Cursors, Seen: e.Seen,
		Prefix: "energy", Log: slog.New(slog.DiscardHandler),
	}
	// Job j publishes records [j*per, (j+1)*per) of b.N, one per upstream second.
	per := (b.N + workers - 1) / workers
	jobs := make([]*pollers.Job, 0, workers)
	for j := 0; j*per < b.N; j++ {
		n := time.Duration(min(per, b.N-j*per)) * time.Second
		ds := &pollers.Dataset{
			Source: "bench", Name: "pipeline", Cadence: time.Minute, Backfill: n,
			MaxSpan: PageRecords * time.Second, Request: recordsRequest, Decode: decodeRecords,
		}
		jobs = append(jobs, &pollers.Job{Dataset: ds, Partition: pollers.Partition{ID: e.run("pipeline")}, Fetcher: client})
	}
	now := t0.Add(time.Duration(per) * time.Second)
	r.Now = func() time.Time { return now }
	b.SetBytes(PayloadSize)
	b.ResetTimer()
	var g errgroup.Group
	var published atomic.Int64
	for _, job := range jobs {
		g.Go(func() error {
			res, err := r.Poll(context.Background(), job)
			published.Add(int64(res.Published))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		e.fatal(b, err)
	}
	if published.Load() != int64(b.N) {
		e.fatal(b, fmt.Errorf("published %d of %d records", published.Load(), b.N))
	}
}

// Repoll is the unchanged re-poll fixture: one job whose seen-store holds RepollKeys
// entities, and an upstream that serves exactly those entities, unchanged.
type Repoll struct {
	Runner *pollers.Runner
	Job    *pollers.Job
	recs   []pollers.Record
	// CommitRate and LoadRate are the seen-store's entries written per second (Commit)
	// and keys read per second (a fresh replica's first Job call).
	CommitRate, LoadRate float64
	// KVBytesPerKey is what the committed entries added to the bucket, per key.
	KVBytesPerKey float64
}

// NewRepoll fills the KV seen-store with RepollKeys entries (through Commit, in pages of
// RepollPage), loads them in a fresh KVSeen as a new replica would, and runs the first
// poll (which only moves the cursor).
func (e *Env) NewRepoll(ctx context.Context) (*Repoll, error) {
	if err := e.Reset(ctx); err != nil {
		return nil, err
	}
	rp := &Repoll{recs: make([]pollers.Record, RepollKeys)}
	bodies := make([][]byte, 1024)
	for i := range bodies {
		bodies[i] = recordJSON(nil, int64(i))
	}
	for i := range rp.recs {
		rp.recs[i] = pollers.Record{Key: "k" + strconv.Itoa(i), Time: t0.Add(time.Duration(i) * time.Second), Body: bodies[i%len(bodies)]}
	}
	span := time.Duration(RepollKeys) * time.Second
	now := t0.Add(span)
	ds := &pollers.Dataset{
		Source: "bench", Name: "repoll", Cadence: time.Minute, Backfill: span, LookBack: span,
		MaxSpan: RepollPage * time.Second,
		Request: func(_ pollers.Partition, w pollers.Window) (string, url.Values) {
			return strconv.FormatInt(int64(w.From.Sub(t0)/time.Second), 10) + "/" + strconv.FormatInt(int64(w.To.Sub(t0)/time.Second), 10), nil
		},
		Decode: rp.decode,
	}
	rp.Job = &pollers.Job{Dataset: ds, Partition: pollers.Partition{ID: e.run("repoll")}, Fetcher: pathFetcher{}}
	id := rp.Job.ID()

	before, err := e.SeenKV.Status(ctx)
	if err != nil {
		return nil, err
	}
	entries := make([]publish.SeenEntry, 0, RepollPage)
	start := time.Now()
	for i := range rp.recs {
		entries = append(entries, publish.SeenEntry{KeyHash: publish.KeyHash(rp.recs[i].Key), ContentHash: publish.ContentHash(rp.recs[i].Body)})
		if len(entries) == RepollPage {
			if err := e.Seen.Commit(ctx, id, entries); err != nil {
				return nil, err
			}
			entries = entries[:0]
		}
	}
	rp.CommitRate = RepollKeys / time.Since(start).Seconds()
	after, err := e.SeenKV.Status(ctx)
	if err != nil {
		return nil, err
	}
	rp.KVBytesPerKey = float64(after.Bytes()-before.Bytes()) / RepollKeys

	seen := publish.NewKVSeen(e.JS, e.SeenKV) // a new replica: nothing cached
	start = time.Now()
	s, err := seen.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	rp.LoadRate = RepollKeys / time.Since(start).Seconds()
	if s.Len() != RepollKeys {
		return nil, fmt.Errorf("seen-store loaded %d keys, want %d", s.Len(), RepollKeys)
	}
	rp.Runner = &pollers.Runner{
		Publisher: publish.NewPublisher(e.JS), Cursors: e.Cursors, Seen: seen,
		Prefix: "energy", Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
	}
	res, err := rp.Runner.Poll(ctx, rp.Job)
	if err != nil {
		return nil, err
	}
	if res.Published != 0 || res.Records != RepollKeys {
		return nil, fmt.Errorf("first re-poll: %d records, %d published; want %d, 0", res.Records, res.Published, RepollKeys)
	}
	return rp, nil
}

// decode returns the records of the window "from/to" (seconds after t0), prebuilt, so
// the figure measures the loop's per-record work, not JSON decoding.
func (rp *Repoll) decode(body []byte) ([]pollers.Record, error) {
	s := string(body)
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			from, err1 := strconv.Atoi(s[:i])
			to, err2 := strconv.Atoi(s[i+1:])
			if err1 != nil || err2 != nil || from < 0 || to > len(rp.recs) || from > to {
				break
			}
			return rp.recs[from:to], nil
		}
	}
	return nil, fmt.Errorf("bad window %q", s)
}

// pathFetcher answers a request with its path.
type pathFetcher struct{}

func (pathFetcher) Get(_ context.Context, path string, _ url.Values) ([]byte, error) {
	return []byte(path), nil
}

// Bench re-polls the job unchanged: every record is checked, none published. One op is
// one poll of RepollKeys records.
func (rp *Repoll) Bench(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		res, err := rp.Runner.Poll(context.Background(), rp.Job)
		if err != nil {
			b.Fatal(err)
		}
		if res.Published != 0 || res.Deduplicated != RepollKeys {
			b.Fatalf("re-poll: %d deduplicated, %d published", res.Deduplicated, res.Published)
		}
	}
	b.ReportMetric(float64(RepollKeys)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// SeenBytesPerKey is the Go heap one remembered entity costs in a job's seen set,
// measured over n keys.
func SeenBytesPerKey(n int) float64 {
	ctx := context.Background()
	entries := make([]publish.SeenEntry, n)
	for i := range entries {
		entries[i] = publish.SeenEntry{KeyHash: publish.KeyHash("k" + strconv.Itoa(i)), ContentHash: uint64(i)}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := publish.NewMemorySeen()
	_ = m.Commit(ctx, "job", entries)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	// entries were allocated before the first reading: kept alive to the second, or their
	// collection would be subtracted from the seen set's cost.
	runtime.KeepAlive(entries)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}
