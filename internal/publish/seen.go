package publish

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// seenKey and seenVal are a Seen map's key (key hash) and value (content hash, then record
// time) as 4-byte words: a slot is 20 bytes with 4-byte alignment, where a uint64 key and a
// struct value would pad it to 24.
type (
	seenKey [2]uint32
	seenVal [3]uint32
)

func toSeenKey(h uint64) seenKey { return seenKey{uint32(h >> 32), uint32(h)} }
func (k seenKey) hash() uint64   { return uint64(k[0])<<32 | uint64(k[1]) }
func (v seenVal) content() uint64 {
	return uint64(v[0])<<32 | uint64(v[1])
}

// seenUnix clamps a SeenEntry time to what a Seen stores (unsigned 32-bit seconds).
func seenUnix(t int64) uint32 { return uint32(min(max(t, 0), math.MaxUint32)) }

// Seen is one job's view of the seen-store: entity key hash → content hash of the last
// published revision and the record's time (what pruning goes by). A job is polled by one
// goroutine at a time, so a Seen needs no lock.
type Seen struct {
	m map[seenKey]seenVal
	// minTime is at most the oldest time in m: Prune skips the walk while nothing can expire.
	minTime uint32
	// What the job holds in the KV bucket (KVSeen only): values, their approximate bytes,
	// and the highest stream sequence of them this process knows.
	values, bytes int
	lastSeq       uint64
}

func newSeen() *Seen { return &Seen{m: map[seenKey]seenVal{}} }

// Get returns an entity's entry: its content hash and the time remembered with it.
func (s *Seen) Get(keyHash uint64) (SeenEntry, bool) {
	v, ok := s.m[toSeenKey(keyHash)]
	return SeenEntry{KeyHash: keyHash, ContentHash: v.content(), Time: int64(v[2])}, ok
}

// Len is the number of entities remembered.
func (s *Seen) Len() int { return len(s.m) }

func (s *Seen) put(kh, ch uint64, t uint32) {
	if len(s.m) == 0 || t < s.minTime {
		s.minTime = t
	}
	s.m[toSeenKey(kh)] = seenVal{uint32(ch >> 32), uint32(ch), t}
}

// prune drops the entries whose time is before before (the zero time: none). It walks the
// map only when the oldest entry is at least pruneSlack older than before, so a job polled
// every few minutes walks its set a few times a day, not every poll.
func (s *Seen) prune(before time.Time) {
	if before.IsZero() || len(s.m) == 0 || before.Unix()-int64(s.minTime) < int64(pruneSlack/time.Second) {
		return
	}
	limit, oldest := before.Unix(), uint32(math.MaxUint32)
	for k, v := range s.m {
		if int64(v[2]) < limit {
			delete(s.m, k)
			continue
		}
		oldest = min(oldest, v[2])
	}
	s.minTime = oldest
}

// counted records one value of the job in the KV bucket: its payload size and stream
// sequence (what compaction decides and purges by).
func (s *Seen) counted(size int, seq uint64) {
	s.values++
	s.bytes += size + seenValueOverhead
	s.lastSeq = max(s.lastSeq, seq)
}

// pruneSlack is how far past an entry's expiry Prune may keep it: the walk over a job's
// set runs once the oldest entry is this much expired.
const pruneSlack = 6 * time.Hour

// SeenEntry is one entity's published revision. Time is the time the entry is kept by
// (unix seconds; see SeenStore.Prune): the record's own time, or later. Zero means unknown:
// the store stamps the entry with the time of the commit.
type SeenEntry struct {
	KeyHash, ContentHash uint64
	Time                 int64
}

// SeenStore remembers, per job, which revision of each entity was published, so an
// unchanged record is not published again even beyond the stream's duplicate window.
type SeenStore interface {
	// Job returns the job's seen set, loading it on first use.
	Job(ctx context.Context, jobID string) (*Seen, error)
	// Commit records entries whose events the stream has acknowledged.
	Commit(ctx context.Context, jobID string, entries []SeenEntry) error
	// Prune forgets the job's entries whose Time is before before (the zero time forgets
	// nothing), and bounds what the store keeps for the job (KVSeen compacts its values).
	// Callers prune only datasets that never re-read a record with an older time.
	Prune(ctx context.Context, jobID string, before time.Time) error
}

// MemorySeen is a SeenStore in process memory (tests, benchmarks).
type MemorySeen struct {
	// Now stamps entries committed without a time (time.Now when nil).
	Now  func() time.Time
	mu   sync.Mutex
	jobs map[string]*Seen
}

// NewMemorySeen returns an empty in-memory seen-store.
func NewMemorySeen() *MemorySeen { return &MemorySeen{jobs: map[string]*Seen{}} }

func (m *MemorySeen) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Job implements SeenStore.
func (m *MemorySeen) Job(_ context.Context, jobID string) (*Seen, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.jobs[jobID]
	if s == nil {
		s = newSeen()
		m.jobs[jobID] = s
	}
	return s, nil
}

// reset replaces a job's set with an empty one and returns it.
func (m *MemorySeen) reset(jobID string) *Seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := newSeen()
	m.jobs[jobID] = s
	return s
}

// Commit implements SeenStore.
func (m *MemorySeen) Commit(ctx context.Context, jobID string, entries []SeenEntry) error {
	s, _ := m.Job(ctx, jobID)
	now := m.now().Unix()
	for _, e := range entries {
		s.put(e.KeyHash, e.ContentHash, stamp(e.Time, now))
	}
	return nil
}

// Prune implements SeenStore.
func (m *MemorySeen) Prune(ctx context.Context, jobID string, before time.Time) error {
	s, _ := m.Job(ctx, jobID)
	s.prune(before)
	return nil
}

// stamp is the stored time of an entry committed with time t at now: unknown (0) becomes now.
func stamp(t, now int64) uint32 {
	if t == 0 {
		t = now
	}
	return seenUnix(t)
}

// KVSeen is the seen-store in a JetStream key-value bucket, cached in memory per job.
//
// Layout: each Commit writes the page's entries packed together (20 bytes each: key hash,
// content hash, time as unsigned unix seconds, big-endian), in values of at most
// SeenBatchEntries entries under "<job id>.seen-<hash of the value>". A page of new records
// costs one small KV write, not one per record. Loading applies the job's values in stream
// order, so a later revision of an entity overrides an earlier one; a value is named after
// its content, so writing the same batch again (a replay) moves it to the end instead of
// adding a key. Values of the older layouts are still read: "<job id>.batch-<hash>" (16
// bytes per entry, no time) and "<job id>.<key hash in hex>" (one 8-byte content hash);
// their entries are stamped with the load time.
//
// Compaction: once a job holds at least CompactValues values and they take at least twice
// the bytes of its live entries, Prune writes the live (unpruned) entries again as fresh
// values (a snapshot, chunked like a commit), then purges the job's older values from the
// bucket's stream in one request (subject filter and sequence bound). Writing first and
// purging second loses nothing if the process dies in between: a reload applies the old
// values, then the snapshot, which holds the latest revision of every live entity.
type KVSeen struct {
	// CompactValues is the number of values a job must hold before Prune compacts it
	// (DefaultSeenCompactValues when zero).
	CompactValues int
	// Now stamps entries without a time (time.Now when nil).
	Now func() time.Time

	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string
	mem    MemorySeen
	st     jetstream.Stream
	loaded map[string]bool
	mu     sync.Mutex
}

// DefaultSeenCompactValues is KVSeen.CompactValues' default: a NET2GRID job (one value per
// 15-minute poll) is compacted every day or two, and holds at most a few hundred messages.
const DefaultSeenCompactValues = 64

// SeenBatchEntries bounds the entries of one seen-store value (80 KiB, far below the NATS
// payload limit of 1 MiB).
const SeenBatchEntries = 4096

const (
	// seenEntrySize is the packed size of one SeenEntry; seenLegacyEntrySize the size in
	// "batch-" values (no time).
	seenEntrySize       = 20
	seenLegacyEntrySize = 16
	// seenValueOverhead approximates what a KV message costs beyond its payload (subject,
	// headers, index) when deciding to compact.
	seenValueOverhead = 128
)

// seenPrefix and seenBatchPrefix start the last token of a value's key; neither is a hex
// digit, so such a key never looks like a key of the per-entity layout.
const (
	seenPrefix      = "seen-"
	seenBatchPrefix = "batch-"
)

// NewKVSeen uses the bucket kv (see OpenKV) through js.
func NewKVSeen(js jetstream.JetStream, kv jetstream.KeyValue) *KVSeen {
	return &KVSeen{js: js, kv: kv, bucket: kv.Bucket(), mem: MemorySeen{jobs: map[string]*Seen{}}, loaded: map[string]bool{}}
}

func (k *KVSeen) now() int64 {
	if k.Now != nil {
		return k.Now().Unix()
	}
	return time.Now().Unix()
}

// Job implements SeenStore: the first call for a job reads its keys from the bucket, a
// later one reads them again if another replica wrote to the job since (see
// changedElsewhere). Called once at the start of each poll.
func (k *KVSeen) Job(ctx context.Context, jobID string) (*Seen, error) {
	return k.job(ctx, jobID, true)
}

// job returns the job's cached set, loading it first if needed; check asks whether
// another replica wrote since (Commit and Prune, within a poll, need not ask again).
func (k *KVSeen) job(ctx context.Context, jobID string, check bool) (*Seen, error) {
	k.mu.Lock()
	loaded := k.loaded[jobID]
	k.mu.Unlock()
	s, _ := k.mem.Job(ctx, jobID)
	if loaded && !check {
		return s, nil
	}
	if loaded {
		stale, err := k.changedElsewhere(ctx, jobID, s)
		if err != nil {
			return nil, err
		}
		if !stale {
			return s, nil
		}
		// Another replica polled the job while this one did not hold it: what is cached
		// misses its revisions. Load the job again from the bucket.
		s = k.mem.reset(jobID)
	}
	w, err := k.kv.WatchFiltered(ctx, []string{jobID + ".*"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("seen-store %s: watch: %w", jobID, err)
	}
	defer func() { _ = w.Stop() }()
	now := seenUnix(k.now())
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, fmt.Errorf("seen-store %s: load: %w", jobID, ctx.Err())
		}
		if e == nil { // all current values delivered
			break
		}
		s.apply(e.Key()[len(jobID)+1:], e.Value(), now)
		s.counted(len(e.Value()), e.Revision())
	}
	k.mu.Lock()
	k.loaded[jobID] = true
	k.mu.Unlock()
	return s, nil
}

// changedElsewhere reports whether the bucket holds a value of the job written after the
// last one s knows: a job's lease can move to another replica and back, and the revisions
// the other replica published must be known here, or they would be published again. One
// request per poll, like the cursor's load.
func (k *KVSeen) changedElsewhere(ctx context.Context, jobID string, s *Seen) (bool, error) {
	st, err := k.stream(ctx)
	if err != nil {
		return false, fmt.Errorf("seen-store %s: %w", jobID, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "$KV."+k.bucket+"."+jobID+".*")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("seen-store %s: last value: %w", jobID, err)
	}
	return m.Sequence > s.lastSeq, nil
}

// stream is the bucket's stream, looked up once.
func (k *KVSeen) stream(ctx context.Context) (jetstream.Stream, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.st == nil {
		st, err := k.js.Stream(ctx, "KV_"+k.bucket)
		if err != nil {
			return nil, err
		}
		k.st = st
	}
	return k.st, nil
}

// apply adds one stored value, of any layout, to s; entries of the layouts without a time
// get now. A value that is none of them is skipped: a stray key never fails a poll.
func (s *Seen) apply(token string, v []byte, now uint32) {
	switch {
	case strings.HasPrefix(token, seenPrefix):
		if len(v)%seenEntrySize != 0 {
			return
		}
		for ; len(v) > 0; v = v[seenEntrySize:] {
			s.put(binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), binary.BigEndian.Uint32(v[16:]))
		}
	case strings.HasPrefix(token, seenBatchPrefix):
		if len(v)%seenLegacyEntrySize != 0 {
			return
		}
		for ; len(v) > 0; v = v[seenLegacyEntrySize:] {
			s.put(binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), now)
		}
	default:
		kh, err := strconv.ParseUint(token, 16, 64)
		if err != nil || len(v) != 8 {
			return
		}
		s.put(kh, binary.BigEndian.Uint64(v), now)
	}
}

// Commit implements SeenStore.
func (k *KVSeen) Commit(ctx context.Context, jobID string, entries []SeenEntry) error {
	if len(entries) == 0 {
		return nil
	}
	s, err := k.job(ctx, jobID, false)
	if err != nil {
		return err
	}
	now := k.now()
	if err := k.write(ctx, jobID, s, len(entries), func(i int) (uint64, uint64, uint32) {
		e := &entries[i]
		return e.KeyHash, e.ContentHash, stamp(e.Time, now)
	}); err != nil {
		return err
	}
	for _, e := range entries {
		s.put(e.KeyHash, e.ContentHash, stamp(e.Time, now))
	}
	return nil
}

// write stores n entries (entry(i) gives the i-th) as values of at most SeenBatchEntries,
// published together and awaited, and counts them in s.
func (k *KVSeen) write(ctx context.Context, jobID string, s *Seen, n int, entry func(int) (kh, ch uint64, t uint32)) error {
	futures := make([]jetstream.PubAckFuture, 0, (n+SeenBatchEntries-1)/SeenBatchEntries)
	buf := make([]byte, n*seenEntrySize)
	prefix := "$KV." + k.bucket + "." + jobID + "." + seenPrefix
	for i := 0; i < n; {
		end := min(n, i+SeenBatchEntries)
		v := buf[i*seenEntrySize : end*seenEntrySize]
		for j := range end - i {
			kh, ch, t := entry(i + j)
			binary.BigEndian.PutUint64(v[j*seenEntrySize:], kh)
			binary.BigEndian.PutUint64(v[j*seenEntrySize+8:], ch)
			binary.BigEndian.PutUint32(v[j*seenEntrySize+16:], t)
		}
		i = end
		subj := prefix + strconv.FormatUint(xxhash.Sum64(v), 16)
		f, err := k.js.PublishAsync(subj, v, jetstream.WithStallWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("seen-store %s: %w", jobID, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case ack := <-f.Ok():
			s.counted(len(f.Msg().Data), ack.Sequence)
		case err := <-f.Err():
			return fmt.Errorf("seen-store %s: %w", jobID, err)
		case <-ctx.Done():
			return fmt.Errorf("seen-store %s: %w", jobID, ctx.Err())
		}
	}
	return nil
}

// Prune implements SeenStore: it forgets entries before before in memory, then compacts
// the job's values in the bucket when they are due (see KVSeen). Forgotten entries stay in
// the bucket until the next compaction; a reload before it brings them back, harmlessly.
func (k *KVSeen) Prune(ctx context.Context, jobID string, before time.Time) error {
	s, err := k.job(ctx, jobID, false)
	if err != nil {
		return err
	}
	s.prune(before)
	limit := k.CompactValues
	if limit <= 0 {
		limit = DefaultSeenCompactValues
	}
	live := len(s.m)*seenEntrySize + (len(s.m)+SeenBatchEntries-1)/SeenBatchEntries*seenValueOverhead
	if s.values < limit || s.bytes < 2*live {
		return nil
	}
	bound, err := k.writeSnapshot(ctx, jobID, s)
	if err != nil {
		return err
	}
	return k.purgeBefore(ctx, jobID, bound)
}

// writeSnapshot writes the job's live entries as fresh values and returns the sequence
// below which the job's values are now redundant (those this process knew before).
func (k *KVSeen) writeSnapshot(ctx context.Context, jobID string, s *Seen) (uint64, error) {
	bound := s.lastSeq + 1
	keys := make([]seenKey, 0, len(s.m))
	for kk := range s.m {
		keys = append(keys, kk)
	}
	s.values, s.bytes = 0, 0
	if err := k.write(ctx, jobID, s, len(keys), func(i int) (uint64, uint64, uint32) {
		v := s.m[keys[i]]
		return keys[i].hash(), v.content(), v[2]
	}); err != nil {
		// Unknown how much was written: count the worst case so a later Prune retries.
		s.values, s.bytes = math.MaxInt32, math.MaxInt32
		return 0, fmt.Errorf("seen-store %s: compact: %w", jobID, err)
	}
	return bound, nil
}

// purgeBefore removes the job's values stored before sequence bound from the bucket's
// stream, in one request. Values written from bound on (the snapshot, later commits) stay.
func (k *KVSeen) purgeBefore(ctx context.Context, jobID string, bound uint64) error {
	st, err := k.stream(ctx)
	if err != nil {
		return fmt.Errorf("seen-store %s: compact: %w", jobID, err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+k.bucket+"."+jobID+".*"), jetstream.WithPurgeSequence(bound)); err != nil {
		return fmt.Errorf("seen-store %s: compact: purge: %w", jobID, err)
	}
	return nil
}
