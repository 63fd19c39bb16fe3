package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the JetStream key-value bucket that holds the shared budgets.
const DefaultBucket = "gridstream_quota"

// OpenBucket creates or updates the key-value bucket that Limiters share (one key per
// upstream) and returns it for Options.KV. An empty bucket name means DefaultBucket.
func OpenBucket(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	if bucket == "" {
		bucket = DefaultBucket
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "gridstream: recent request times per upstream (shared quota)",
		History:     1,
		Replicas:    max(1, replicas),
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("quota bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// record is the value stored under an upstream's key: the grant times of every
// replica still inside some window, and a shared pause.
//
// Wire format (JSON): {"v":1,"ts":[<unix nanoseconds>,...],"pause":<unix nanoseconds>}.
type record struct {
	V     int     `json:"v"`
	TS    []int64 `json:"ts"`
	Pause int64   `json:"pause,omitempty"`
}

func (r record) timeline() timeline {
	tl := make(timeline, len(r.TS))
	for i, n := range r.TS {
		tl[i] = time.Unix(0, n)
	}
	return tl.merge(nil) // sorts: replicas' clocks may disagree
}

func (r record) pauseTime() time.Time {
	if r.Pause == 0 {
		return time.Time{}
	}
	return time.Unix(0, r.Pause)
}

func newRecord(tl timeline, pause time.Time, now time.Time) record {
	r := record{V: 1, TS: make([]int64, len(tl))}
	for i, t := range tl {
		r.TS[i] = t.UnixNano()
	}
	if pause.After(now) {
		r.Pause = pause.UnixNano()
	}
	return r
}

// reserveShared is reserve against the bucket: read, prune, check every window,
// append, compare-and-swap; a conflict means another replica was granted meanwhile,
// so it starts over. Grants made while the bucket was unreachable are written back
// with the next successful update.
func (l *Limiter) reserveShared(ctx context.Context) (bool, time.Time, error) {
	for {
		if err := ctx.Err(); err != nil {
			return false, time.Time{}, err
		}
		rec, rev, err := l.load(ctx)
		if err != nil {
			return false, time.Time{}, err
		}
		now := l.clock.Now()
		l.mu.Lock()
		unsynced := l.unsynced
		l.mu.Unlock()
		tl := rec.timeline().merge(unsynced).prune(now, l.maxPer)
		if pause := rec.pauseTime(); now.Before(pause) {
			l.setView(tl)
			return false, pause, nil
		}
		if ok, at := tl.fit(now, l.windows, l.margin); !ok {
			l.setView(tl)
			return false, at, nil
		}
		tl = tl.insert(now)
		err = l.store(ctx, newRecord(tl, rec.pauseTime(), now), rev)
		if isConflict(err) {
			continue
		}
		if err != nil {
			return false, time.Time{}, err
		}
		l.mu.Lock()
		l.view = tl
		l.own = l.own.prune(now, l.maxPer).insert(now)
		l.unsynced = nil
		if !l.fallbackUntil.IsZero() {
			l.fallbackUntil = time.Time{}
			l.log.Info("quota: shared budget reachable again", slog.String("upstream", l.name))
		}
		l.granted(now)
		l.mu.Unlock()
		return true, time.Time{}, nil
	}
}

// postPause writes a local pause to the bucket once, best effort, so that other
// replicas hold as well.
func (l *Limiter) postPause(ctx context.Context, until time.Time) {
	if l.kv == nil {
		return
	}
	l.mu.Lock()
	if !until.After(l.pausePosted) || !l.fallbackUntil.IsZero() {
		l.mu.Unlock()
		return
	}
	l.pausePosted = until
	l.mu.Unlock()
	for range 10 {
		rec, rev, err := l.load(ctx)
		if err == nil {
			if !until.After(rec.pauseTime()) {
				return
			}
			rec.V, rec.Pause = 1, until.UnixNano()
			if err = l.store(ctx, rec, rev); err == nil {
				return
			}
		}
		if !isConflict(err) {
			l.log.Debug("quota: could not share pause", slog.String("upstream", l.name), slog.Any("error", err))
			return
		}
	}
}

func (l *Limiter) setView(tl timeline) {
	l.mu.Lock()
	l.view = tl
	l.mu.Unlock()
}

func (l *Limiter) load(ctx context.Context) (record, uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.kvTimeout)
	defer cancel()
	e, err := l.kv.Get(ctx, l.name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return record{V: 1}, 0, nil
	}
	if err != nil {
		return record{}, 0, fmt.Errorf("quota %s: read shared budget: %w", l.name, err)
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return record{}, 0, fmt.Errorf("quota %s: decode shared budget: %w", l.name, err)
	}
	return rec, e.Revision(), nil
}

func (l *Limiter) store(ctx context.Context, rec record, rev uint64) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("quota %s: encode shared budget: %w", l.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.kvTimeout)
	defer cancel()
	if rev == 0 {
		_, err = l.kv.Create(ctx, l.name, data)
	} else {
		_, err = l.kv.Update(ctx, l.name, data, rev)
	}
	if err != nil {
		return fmt.Errorf("quota %s: write shared budget: %w", l.name, err)
	}
	return nil
}

func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
