package publish

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// Seen is one job's view of the seen-store: entity key hash → content hash of the last
// published revision. A job is polled by one goroutine at a time, so a Seen needs no lock.
type Seen struct {
	m map[uint64]uint64
}

// Lookup returns the content hash last published for an entity key hash.
func (s *Seen) Lookup(keyHash uint64) (uint64, bool) {
	h, ok := s.m[keyHash]
	return h, ok
}

// Len is the number of entities remembered.
func (s *Seen) Len() int { return len(s.m) }

// SeenEntry is one entity's published revision.
type SeenEntry struct{ KeyHash, ContentHash uint64 }

// SeenStore remembers, per job, which revision of each entity was published, so an
// unchanged record is not published again even beyond the stream's duplicate window.
type SeenStore interface {
	// Job returns the job's seen set, loading it on first use.
	Job(ctx context.Context, jobID string) (*Seen, error)
	// Commit records entries whose events the stream has acknowledged.
	Commit(ctx context.Context, jobID string, entries []SeenEntry) error
}

// MemorySeen is a SeenStore in process memory (tests, benchmarks).
type MemorySeen struct {
	mu   sync.Mutex
	jobs map[string]*Seen
}

// NewMemorySeen returns an empty in-memory seen-store.
func NewMemorySeen() *MemorySeen { return &MemorySeen{jobs: map[string]*Seen{}} }

// Job implements SeenStore.
func (m *MemorySeen) Job(_ context.Context, jobID string) (*Seen, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.jobs[jobID]
	if s == nil {
		s = &Seen{m: map[uint64]uint64{}}
		m.jobs[jobID] = s
	}
	return s, nil
}

// Commit implements SeenStore.
func (m *MemorySeen) Commit(ctx context.Context, jobID string, entries []SeenEntry) error {
	s, _ := m.Job(ctx, jobID)
	for _, e := range entries {
		s.m[e.KeyHash] = e.ContentHash
	}
	return nil
}

// KVSeen is the seen-store in a JetStream key-value bucket, cached in memory per job.
//
// Layout: each Commit writes the page's entries packed together (16 bytes each: key hash
// then content hash, big-endian), in values of at most SeenBatchEntries entries under
// "<job id>.batch-<hash of the value>". A page of new records costs one small KV write,
// not one per record, so the seen-store adds almost nothing to the publish path. Loading
// applies the job's values in stream order, so a later revision of an entity overrides an
// earlier one; a value is named after its content, so writing the same batch again (a
// replay) moves it to the end instead of adding a key. Keys of the older layout
// ("<job id>.<key hash in hex>", one 8-byte content hash each) are still read.
type KVSeen struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string
	mem    MemorySeen
	loaded map[string]bool
	mu     sync.Mutex
}

// SeenBatchEntries bounds the entries of one seen-store value (64 KiB, far below the
// NATS payload limit).
const SeenBatchEntries = 4096

// seenEntrySize is the packed size of one SeenEntry.
const seenEntrySize = 16

// seenBatchPrefix starts the last token of a batch key; it is not a hex digit, so a batch
// key never looks like a key of the per-entity layout.
const seenBatchPrefix = "batch-"

// NewKVSeen uses the bucket kv (see OpenKV) through js.
func NewKVSeen(js jetstream.JetStream, kv jetstream.KeyValue) *KVSeen {
	return &KVSeen{js: js, kv: kv, bucket: kv.Bucket(), mem: MemorySeen{jobs: map[string]*Seen{}}, loaded: map[string]bool{}}
}

// Job implements SeenStore: the first call for a job reads its keys from the bucket.
func (k *KVSeen) Job(ctx context.Context, jobID string) (*Seen, error) {
	k.mu.Lock()
	loaded := k.loaded[jobID]
	k.mu.Unlock()
	s, _ := k.mem.Job(ctx, jobID)
	if loaded {
		return s, nil
	}
	w, err := k.kv.WatchFiltered(ctx, []string{jobID + ".*"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("seen-store %s: watch: %w", jobID, err)
	}
	defer func() { _ = w.Stop() }()
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
		s.apply(e.Key()[len(jobID)+1:], e.Value())
	}
	k.mu.Lock()
	k.loaded[jobID] = true
	k.mu.Unlock()
	return s, nil
}

// apply adds one stored value, of either layout, to s. A value that is neither is
// skipped: a stray key never fails a poll.
func (s *Seen) apply(token string, v []byte) {
	if strings.HasPrefix(token, seenBatchPrefix) {
		if len(v)%seenEntrySize != 0 {
			return
		}
		for ; len(v) > 0; v = v[seenEntrySize:] {
			s.m[binary.BigEndian.Uint64(v)] = binary.BigEndian.Uint64(v[8:])
		}
		return
	}
	kh, err := strconv.ParseUint(token, 16, 64)
	if err != nil || len(v) != 8 {
		return
	}
	s.m[kh] = binary.BigEndian.Uint64(v)
}

// Commit implements SeenStore.
func (k *KVSeen) Commit(ctx context.Context, jobID string, entries []SeenEntry) error {
	if len(entries) == 0 {
		return nil
	}
	n := (len(entries) + SeenBatchEntries - 1) / SeenBatchEntries
	futures := make([]jetstream.PubAckFuture, 0, n)
	buf := make([]byte, len(entries)*seenEntrySize)
	prefix := "$KV." + k.bucket + "." + jobID + "." + seenBatchPrefix
	for rest, off := entries, 0; len(rest) > 0; {
		chunk := rest[:min(len(rest), SeenBatchEntries)]
		rest = rest[len(chunk):]
		v := buf[off : off+len(chunk)*seenEntrySize]
		off += len(v)
		for i, e := range chunk {
			binary.BigEndian.PutUint64(v[i*seenEntrySize:], e.KeyHash)
			binary.BigEndian.PutUint64(v[i*seenEntrySize+8:], e.ContentHash)
		}
		subj := prefix + strconv.FormatUint(xxhash.Sum64(v), 16)
		f, err := k.js.PublishAsync(subj, v, jetstream.WithStallWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("seen-store %s: %w", jobID, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("seen-store %s: %w", jobID, err)
		case <-ctx.Done():
			return fmt.Errorf("seen-store %s: %w", jobID, ctx.Err())
		}
	}
	return k.mem.Commit(ctx, jobID, entries)
}
