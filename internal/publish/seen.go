package publish

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"

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

// KVSeen is the seen-store in a JetStream key-value bucket, one key per entity
// (<job id>.<key hash>), cached in memory per job. Entries are written with async
// publishes to the bucket's subjects and awaited together, so a page of new records
// costs one round trip, not one per record.
type KVSeen struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	bucket string
	mem    MemorySeen
	loaded map[string]bool
	mu     sync.Mutex
}

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
		key := e.Key()
		kh, err := strconv.ParseUint(key[len(jobID)+1:], 16, 64)
		if err != nil || len(e.Value()) != 8 {
			continue // not ours; never fail a poll on a stray key
		}
		s.m[kh] = binary.BigEndian.Uint64(e.Value())
	}
	k.mu.Lock()
	k.loaded[jobID] = true
	k.mu.Unlock()
	return s, nil
}

// Commit implements SeenStore.
func (k *KVSeen) Commit(ctx context.Context, jobID string, entries []SeenEntry) error {
	if len(entries) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, 0, len(entries))
	for _, e := range entries {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], e.ContentHash)
		subj := "$KV." + k.bucket + "." + jobID + "." + strconv.FormatUint(e.KeyHash, 16)
		f, err := k.js.PublishAsync(subj, v[:], jetstream.WithStallWait(5e9))
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
