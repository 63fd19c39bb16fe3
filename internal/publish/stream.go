package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is the stream every event goes to.
type StreamConfig struct {
	Name string // default ENERGY
	// Prefix is the first subject token(s); the stream takes <Prefix>.>.
	Prefix     string
	Duplicates time.Duration // JetStream duplicate window for Nats-Msg-Id
	MaxAge     time.Duration // 0 = keep forever
	Storage    string        // "file" or "memory"
	Replicas   int
}

func (c StreamConfig) jetstream() (jetstream.StreamConfig, error) {
	storage := jetstream.FileStorage
	switch c.Storage {
	case "", "file":
	case "memory":
		storage = jetstream.MemoryStorage
	default:
		return jetstream.StreamConfig{}, fmt.Errorf("stream storage %q: want file or memory", c.Storage)
	}
	replicas := c.Replicas
	if replicas == 0 {
		replicas = 1
	}
	return jetstream.StreamConfig{
		Name:        c.Name,
		Description: "gridstream: energy-market API events (CloudEvents over NATS)",
		Subjects:    []string{c.Prefix + ".>"},
		Duplicates:  c.Duplicates,
		MaxAge:      c.MaxAge,
		Storage:     storage,
		Replicas:    replicas,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
	}, nil
}

// EnsureStream creates the stream, or updates it to c when it exists (start-up is the
// one place the stream's limits are set, so a config change takes effect on restart).
func EnsureStream(ctx context.Context, js jetstream.JetStream, c StreamConfig) (jetstream.Stream, error) {
	sc, err := c.jetstream()
	if err != nil {
		return nil, err
	}
	s, err := js.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("create or update stream %s: %w", c.Name, err)
	}
	return s, nil
}

// KVConfig says how gridstream's state buckets are stored.
type KVConfig struct {
	Storage  string
	Replicas int
}

// OpenKV creates or opens a key-value bucket.
func OpenKV(ctx context.Context, js jetstream.JetStream, bucket, description string, c KVConfig) (jetstream.KeyValue, error) {
	storage := jetstream.FileStorage
	if c.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	replicas := max(c.Replicas, 1)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: description, History: 1, Storage: storage, Replicas: replicas,
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("open key-value bucket %s: NATS did not answer in time: %w", bucket, err)
		}
		return nil, fmt.Errorf("open key-value bucket %s: %w", bucket, err)
	}
	return kv, nil
}
