package publish

import (
	"context"
	"encoding/binary"
	"runtime"
	"strconv"
	"testing"

	"github.com/gridstream/gridstream/internal/natstest"
)

// seenOf returns a seen set holding n entities "k<i>" → ContentHash of body i%len(bodies).
func seenOf(n int, bodies [][]byte) (*Seen, []string) {
	s := &Seen{m: make(map[seenKey]seenVal, n)}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		s.put(KeyHash(keys[i]), ContentHash(bodies[i%len(bodies)]), 1)
	}
	return s, keys
}

// TestDedupeHitPathDoesNotAllocate: checking an unchanged record (hash its key and
// body, look the key up, compare) allocates nothing, so an unchanged re-poll costs no
// garbage per record.
func TestDedupeHitPathDoesNotAllocate(t *testing.T) {
	bodies := [][]byte{[]byte(`{"v":1}`), []byte(`{"v":2}`)}
	s, keys := seenOf(1000, bodies)
	i := 0
	allocs := testing.AllocsPerRun(10_000, func() {
		k, b := keys[i%len(keys)], bodies[i%len(bodies)]
		i++
		e, known := s.Get(KeyHash(k))
		if !known || e.ContentHash != ContentHash(b) {
			t.Fatal("record not recognised as unchanged")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per unchanged record, want 0", allocs)
	}
}

// TestKVSeenReloadKeepsTheLatestRevision: a fresh replica loading a job sees, for each
// entity, the revision committed last, across batches, replays of a batch and keys of the
// per-entity layout written before batches existed.
func TestKVSeenReloadKeepsTheLatestRevision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Run(t)
	kv, err := OpenKV(ctx, srv.JS, "seen", "test", KVConfig{Storage: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	const job = "src.ds.p1"
	// The per-entity layout: key hash 1 → 10, key hash 2 → 20.
	for kh, ch := range map[uint64]uint64{1: 10, 2: 20} {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], ch)
		if _, err := kv.Put(ctx, job+"."+strconv.FormatUint(kh, 16), v[:]); err != nil {
			t.Fatal(err)
		}
	}
	seen := NewKVSeen(srv.JS, kv)
	if _, err := seen.Job(ctx, job); err != nil {
		t.Fatal(err)
	}
	big := make([]SeenEntry, SeenBatchEntries+10) // two values
	for i := range big {
		big[i] = SeenEntry{KeyHash: uint64(1000 + i), ContentHash: 1}
	}
	for _, entries := range [][]SeenEntry{
		{{2, 21, 5}, {3, 30, 5}},   // batch A: 2 revised, 3 new
		{{3, 31, 5}},               // batch B: 3 revised
		{{2, 21, 5}, {3, 30, 5}},   // batch A again (same content): 3 back to 30, A now last
		big,                        // many entries, split
		{{4, 40, 5}, {4, 41, 5}},   // one entity twice in one page: the later wins
		{{1, 11, 5}},               // the per-entity key 1 revised by a batch
		{{9, 90, 5}}, {{9, 90, 5}}, // a replayed commit
	} {
		if err := seen.Commit(ctx, job, entries); err != nil {
			t.Fatal(err)
		}
	}
	want := map[uint64]uint64{1: 11, 2: 21, 3: 30, 4: 41, 9: 90}
	for _, e := range big {
		want[e.KeyHash] = e.ContentHash
	}
	fresh := NewKVSeen(srv.JS, kv)
	for name, store := range map[string]*KVSeen{"committing replica": seen, "fresh replica": fresh} {
		s, err := store.Job(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		if s.Len() != len(want) {
			t.Errorf("%s: %d entities, want %d", name, s.Len(), len(want))
		}
		for kh, ch := range want {
			if got, ok := s.Get(kh); !ok || got.ContentHash != ch {
				t.Errorf("%s: key hash %d → %d (known %v), want %d", name, kh, got.ContentHash, ok, ch)
			}
		}
	}
	// Another job's values are not read.
	other, err := fresh.Job(ctx, "src.ds.p2")
	if err != nil || other.Len() != 0 {
		t.Fatalf("other job: %d entities, %v", other.Len(), err)
	}
}

// TestKVSeenWritesOneValuePerPage: a page of new records costs one KV write, not one
// per record.
func TestKVSeenWritesOneValuePerPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Run(t)
	kv, err := OpenKV(ctx, srv.JS, "seen", "test", KVConfig{Storage: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	seen := NewKVSeen(srv.JS, kv)
	entries := make([]SeenEntry, 2016)
	for i := range entries {
		entries[i] = SeenEntry{KeyHash: uint64(i), ContentHash: uint64(i)}
	}
	if err := seen.Commit(ctx, "a.b.c", entries); err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Values() != 1 {
		t.Fatalf("%d values for one page, want 1", st.Values())
	}
}

func BenchmarkSeenLookupHit(b *testing.B) {
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = []byte(`{"v":` + strconv.Itoa(i) + `,"pad":"` + string(make([]byte, 480)) + `"}`)
	}
	s, keys := seenOf(1_000_000, bodies)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if e, ok := s.Get(KeyHash(keys[i])); !ok || e.ContentHash != ContentHash(bodies[i%len(bodies)]) {
			b.Fatal("miss")
		}
		if i++; i == len(keys) {
			i = 0
		}
	}
}

func BenchmarkKVSeenCommit(b *testing.B) {
	ctx := context.Background()
	srv := natstest.Run(b)
	kv, err := OpenKV(ctx, srv.JS, "seen", "bench", KVConfig{})
	if err != nil {
		b.Fatal(err)
	}
	seen := NewKVSeen(srv.JS, kv)
	entries := make([]SeenEntry, 2016)
	b.ReportAllocs()
	n := uint64(0)
	for b.Loop() {
		for i := range entries {
			n++
			entries[i] = SeenEntry{KeyHash: n, ContentHash: n}
		}
		if err := seen.Commit(ctx, "bench.seen.p", entries); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(entries))/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkSeenHeapBytesPerKey: the Go heap one entity costs in a job's seen set of 1,000,000
// keys (B/key), beside the map of the layout without times (key hash → content hash) for
// comparison. Only the map is alive between the two heap readings.
func BenchmarkSeenHeapBytesPerKey(b *testing.B) {
	const n = 1_000_000
	heap := func(build func() any) float64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := build()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(m)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	b.Run("layout=with-time", func(b *testing.B) {
		for b.Loop() {
			b.ReportMetric(heap(func() any {
				s := newSeen()
				for i := range uint64(n) {
					s.put(KeyHash("k"+strconv.FormatUint(i, 10)), i, uint32(i))
				}
				return s
			}), "B/key")
		}
	})
	b.Run("layout=without-time", func(b *testing.B) {
		for b.Loop() {
			b.ReportMetric(heap(func() any {
				m := map[uint64]uint64{}
				for i := range uint64(n) {
					m[KeyHash("k"+strconv.FormatUint(i, 10))] = i
				}
				return m
			}), "B/key")
		}
	})
}
