package publish

import (
	"context"
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// seenBucket opens a seen bucket on a fresh server.
func seenBucket(t *testing.T) (*natstest.Server, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Run(t)
	kv, err := OpenKV(context.Background(), srv.JS, "seen", "test", KVConfig{Storage: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	return srv, kv
}

// jobValues counts the job's messages in the bucket's stream.
func jobValues(t *testing.T, js jetstream.JetStream, kv jetstream.KeyValue, job string) (msgs uint64) {
	t.Helper()
	st, err := js.Stream(context.Background(), "KV_"+kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("$KV."+kv.Bucket()+"."+job+".*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range info.State.Subjects {
		msgs += n
	}
	return msgs
}

// assertSeen fails unless s holds exactly want (key hash → content hash).
func assertSeen(t *testing.T, name string, s *Seen, want map[uint64]uint64) {
	t.Helper()
	if s.Len() != len(want) {
		t.Errorf("%s: %d entities, want %d", name, s.Len(), len(want))
	}
	for kh, ch := range want {
		if got, ok := s.Get(kh); !ok || got.ContentHash != ch {
			t.Errorf("%s: key hash %d → %d (known %v), want %d", name, kh, got.ContentHash, ok, ch)
		}
	}
}

func TestPruneForgetsOnlyEntriesBeforeTheHorizon(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, kv := seenBucket(t)
	day := int64(24 * 3600)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	entries := []SeenEntry{{1, 10, base.Unix()}, {2, 20, base.Unix() + day}, {3, 30, base.Unix() + 2*day}, {4, 40, base.Unix() + 3*day}}
	for name, store := range map[string]SeenStore{"memory": NewMemorySeen(), "kv": NewKVSeen(srv.JS, kv)} {
		t.Run(name, func(t *testing.T) {
			if err := store.Commit(ctx, "j.a.b", entries); err != nil {
				t.Fatal(err)
			}
			if err := store.Prune(ctx, "j.a.b", time.Time{}); err != nil { // zero: forget nothing
				t.Fatal(err)
			}
			s, _ := store.Job(ctx, "j.a.b")
			if s.Len() != 4 {
				t.Fatalf("zero horizon pruned: %d entities left", s.Len())
			}
			if err := store.Prune(ctx, "j.a.b", base.Add(48*time.Hour)); err != nil {
				t.Fatal(err)
			}
			assertSeen(t, name, s, map[uint64]uint64{3: 30, 4: 40})
			if e, ok := s.Get(3); !ok || e.Time != base.Unix()+2*day {
				t.Errorf("entry 3 = %+v, want its time kept", e)
			}
		})
	}
}

func TestSeenEntryWithoutTimeIsStampedWithTheCommitTime(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemorySeen()
	m.Now = func() time.Time { return now }
	if err := m.Commit(context.Background(), "j", []SeenEntry{{KeyHash: 1, ContentHash: 2}}); err != nil {
		t.Fatal(err)
	}
	s, _ := m.Job(context.Background(), "j")
	if e, _ := s.Get(1); e.Time != now.Unix() {
		t.Fatalf("time %d, want the commit time %d", e.Time, now.Unix())
	}
	_ = m.Prune(context.Background(), "j", now.Add(-time.Hour))
	if s.Len() != 1 {
		t.Fatal("an entry of unknown time was pruned before its commit time")
	}
}

// TestKVSeenCompactionBoundsTheBucketAndReloadsTheLiveSet: once a job holds many values,
// Prune rewrites its live entries and purges the rest; a fresh replica loads exactly the
// live entries with their latest revisions, from values of every layout.
func TestKVSeenCompactionBoundsTheBucketAndReloadsTheLiveSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, kv, seen := legacySeen(t)
	const job = legacyJob
	now := legacyNow
	seen.CompactValues = 8
	s, err := seen.Job(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	assertSeen(t, "legacy layouts", s, map[uint64]uint64{1: 10, 2: 20, 5: 50, 6: 60})
	if e, _ := s.Get(1); e.Time != now.Unix() {
		t.Errorf("legacy entry loaded with time %d, want the load time %d", e.Time, now.Unix())
	}
	want := map[uint64]uint64{}
	for i := range 40 { // 40 pages: entity 100+i, and entity 7 revised every page
		kh := uint64(100 + i)
		if err := seen.Commit(ctx, job, []SeenEntry{{kh, kh, now.Add(time.Duration(i) * time.Hour).Unix()}, {7, uint64(i), now.Add(100 * time.Hour).Unix()}}); err != nil {
			t.Fatal(err)
		}
		if i >= 20 {
			want[kh] = kh
		}
	}
	want[7] = 39
	before := jobValues(t, srv.JS, kv, job)
	// Forgets the legacy entries (stamped now) and 100..119.
	if err := seen.Prune(ctx, job, now.Add(20*time.Hour)); err != nil {
		t.Fatal(err)
	}
	after := jobValues(t, srv.JS, kv, job)
	if after != 1 {
		t.Errorf("%d values after compaction (%d before), want 1", after, before)
	}
	assertSeen(t, "compacting replica", s, want)
	fresh := NewKVSeen(srv.JS, kv)
	fs, err := fresh.Job(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	assertSeen(t, "fresh replica", fs, want)
	if e, _ := fs.Get(139); e.Time != now.Add(39*time.Hour).Unix() {
		t.Errorf("entry reloaded with time %d, want %d", e.Time, now.Add(39*time.Hour).Unix())
	}
	// Commits after the compaction are kept and win over the snapshot.
	if err := seen.Commit(ctx, job, []SeenEntry{{7, 77, now.Unix() + 200}}); err != nil {
		t.Fatal(err)
	}
	want[7] = 77
	fs, _ = NewKVSeen(srv.JS, kv).Job(ctx, job)
	assertSeen(t, "after a later commit", fs, want)
}

// legacyJob is the job of the compaction tests, legacyNow their clock.
const legacyJob = "src.ds.p1"

var legacyNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// legacySeen opens a seen bucket holding legacyJob's values of the older layouts
// (writeLegacy), and a KVSeen on it whose clock stands at legacyNow.
func legacySeen(t *testing.T) (*natstest.Server, jetstream.KeyValue, *KVSeen) {
	t.Helper()
	srv, kv := seenBucket(t)
	writeLegacy(t, kv, legacyJob)
	seen := NewKVSeen(srv.JS, kv)
	seen.Now = func() time.Time { return legacyNow }
	return srv, kv, seen
}

// writeLegacy puts values of the two older layouts: per-entity keys (1 → 10, 2 → 2) and a
// 16-byte batch (2 → 20, 5 → 50, 6 → 60).
func writeLegacy(t *testing.T, kv jetstream.KeyValue, job string) {
	t.Helper()
	ctx := context.Background()
	for kh, ch := range map[uint64]uint64{1: 10, 2: 2} {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], ch)
		if _, err := kv.Put(ctx, job+"."+strconv.FormatUint(kh, 16), v[:]); err != nil {
			t.Fatal(err)
		}
	}
	var b []byte
	for _, e := range [][2]uint64{{2, 20}, {5, 50}, {6, 60}} {
		b = binary.BigEndian.AppendUint64(b, e[0])
		b = binary.BigEndian.AppendUint64(b, e[1])
	}
	if _, err := kv.Put(ctx, job+".batch-legacy", b); err != nil {
		t.Fatal(err)
	}
}

// TestKVSeenCrashBetweenSnapshotAndPurgeReloadsCorrectly: a process that dies after writing
// the snapshot and before purging leaves both in the bucket; a reload still gives every
// live entity its latest revision, and the next compaction finishes the job.
func TestKVSeenCrashBetweenSnapshotAndPurgeReloadsCorrectly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, kv, seen := legacySeen(t)
	const job = legacyJob
	now := legacyNow
	big := make([]SeenEntry, SeenBatchEntries+5) // the snapshot takes two values
	want := map[uint64]uint64{1: 10, 2: 20, 5: 50, 6: 60}
	for i := range big {
		big[i] = SeenEntry{uint64(1000 + i), uint64(i), now.Unix()}
		want[uint64(1000+i)] = uint64(i)
	}
	for _, entries := range [][]SeenEntry{big, {{5, 51, now.Unix()}}, {{5, 52, now.Unix()}}, {{8, 80, 1}}} {
		if err := seen.Commit(ctx, job, entries); err != nil {
			t.Fatal(err)
		}
	}
	want[5] = 52
	s, _ := seen.Job(ctx, job)
	s.prune(now.Add(-time.Hour)) // forgets 8 (time 1) in memory only
	if _, err := seen.writeSnapshot(ctx, job, s); err != nil {
		t.Fatal(err)
	}
	// "Crash": no purge. A new replica loads old values and snapshot together.
	fresh := NewKVSeen(srv.JS, kv)
	fresh.CompactValues = 1
	fs, err := fresh.Job(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	withOld := map[uint64]uint64{8: 80} // forgotten before the crash, back until pruned again
	for kh, ch := range want {
		withOld[kh] = ch
	}
	assertSeen(t, "reload after the crash", fs, withOld)
	if err := fresh.Prune(ctx, job, time.Unix(now.Unix()-3600, 0)); err != nil {
		t.Fatal(err)
	}
	if n := jobValues(t, srv.JS, kv, job); n != 2 {
		t.Errorf("%d values after the next compaction, want the 2 of a snapshot", n)
	}
	fs, _ = NewKVSeen(srv.JS, kv).Job(ctx, job)
	assertSeen(t, "reload after the next compaction", fs, want)
}

func TestSeenTimesAreClampedToWhatIsStored(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   int64
		want uint32
	}{
		{"before 1970", -5, 0},
		{"now", 1_800_000_000, 1_800_000_000},
		{"after 2106", 1 << 40, 1<<32 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := seenUnix(tc.in); got != tc.want {
				t.Fatalf("seenUnix(%d) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// TestKVSeenReloadsAJobAnotherReplicaPolled: a job's lease moves from replica A to B and
// back; A must then know the revisions B published, or it would publish them again.
func TestKVSeenReloadsAJobAnotherReplicaPolled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv, kv := seenBucket(t)
	const job = "src.ds.p1"
	a, b := NewKVSeen(srv.JS, kv), NewKVSeen(srv.JS, kv)
	if err := a.Commit(ctx, job, []SeenEntry{{1, 10, 0}, {2, 20, 0}}); err != nil {
		t.Fatal(err)
	}
	if s, err := a.Job(ctx, job); err != nil || s.Len() != 2 {
		t.Fatalf("A before the move: %v, %v", s, err)
	}
	if err := b.Commit(ctx, job, []SeenEntry{{1, 11, 0}, {3, 30, 0}}); err != nil {
		t.Fatal(err)
	}
	s, err := a.Job(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	assertSeen(t, "A after B polled", s, map[uint64]uint64{1: 11, 2: 20, 3: 30})
	// A's own commits do not make it reload (it knows them), and are kept.
	if err := a.Commit(ctx, job, []SeenEntry{{4, 40, 0}}); err != nil {
		t.Fatal(err)
	}
	if s2, _ := a.Job(ctx, job); s2 != s {
		t.Error("A reloaded a job only it wrote since its last load")
	}
	assertSeen(t, "A after its own commit", s, map[uint64]uint64{1: 11, 2: 20, 3: 30, 4: 40})
}
