package pollers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Cursor is what a job remembers between polls. It moves only after the stream has
// acknowledged every event before it.
type Cursor struct {
	// Mark: everything the upstream holds before Mark has been published (time-window
	// datasets), or the time of the last record published (keyset datasets).
	Mark time.Time `json:"mark"`
	// Skip counts the records at exactly Mark already published (keyset datasets only).
	Skip int `json:"skip,omitempty"`
	// Deep is when the last deep re-read (Dataset.DeepLookBack) finished.
	Deep time.Time `json:"deep,omitzero"`
}

// CursorStore keeps cursors per job id.
type CursorStore interface {
	// Load returns the job's cursor, the zero Cursor for a new job.
	Load(ctx context.Context, jobID string) (Cursor, error)
	Save(ctx context.Context, jobID string, c Cursor) error
}

// MemoryCursors is a CursorStore in memory (tests).
type MemoryCursors struct {
	mu sync.Mutex
	m  map[string]Cursor
}

// NewMemoryCursors returns an empty in-memory cursor store.
func NewMemoryCursors() *MemoryCursors { return &MemoryCursors{m: map[string]Cursor{}} }

// Load implements CursorStore.
func (m *MemoryCursors) Load(_ context.Context, id string) (Cursor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[id], nil
}

// Save implements CursorStore.
func (m *MemoryCursors) Save(_ context.Context, id string, c Cursor) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[id] = c
	return nil
}

// KVCursors keeps cursors in a JetStream key-value bucket, key = job id.
type KVCursors struct{ kv jetstream.KeyValue }

// NewKVCursors uses the bucket kv (see publish.OpenKV).
func NewKVCursors(kv jetstream.KeyValue) *KVCursors { return &KVCursors{kv: kv} }

// Load implements CursorStore.
func (k *KVCursors) Load(ctx context.Context, id string) (Cursor, error) {
	e, err := k.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Cursor{}, nil
	}
	if err != nil {
		return Cursor{}, fmt.Errorf("load cursor %s: %w", id, err)
	}
	var c Cursor
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Cursor{}, fmt.Errorf("load cursor %s: %w", id, err)
	}
	return c, nil
}

// Save implements CursorStore.
func (k *KVCursors) Save(ctx context.Context, id string, c Cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if _, err := k.kv.Put(ctx, id, b); err != nil {
		return fmt.Errorf("save cursor %s: %w", id, err)
	}
	return nil
}
