package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PayloadSize is the event body size every throughput figure uses.
const PayloadSize = 512

// MaxPending is the async-publish bound of both the raw and the pipeline figures: the
// connector's default (GRIDSTREAM_NATS_MAX_PENDING).
const MaxPending = 1024

// t0 is the upstream time the generated records start at.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Env is the in-process JetStream server (FILE storage in a temp dir) the figures run on,
// with the stream and the state buckets the connector uses.
type Env struct {
	Dir     string
	Server  *server.Server
	NC      *nats.Conn
	JS      jetstream.JetStream
	Stream  jetstream.Stream
	Cursors *pollers.KVCursors
	SeenKV  jetstream.KeyValue
	Seen    *publish.KVSeen

	upstream *httptest.Server
	runs     atomic.Int64
	mu       sync.Mutex
	failure  error
}

// NewEnv starts the server in a fresh temp dir and creates the ENERGY stream and the
// cursor and seen buckets, as the connector does at start-up.
func NewEnv(ctx context.Context) (*Env, error) {
	dir, err := os.MkdirTemp("", "gridstream-bench-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	if e.Server, err = publish.StartEmbedded(dir); err != nil {
		e.Close()
		return nil, err
	}
	if e.NC, err = nats.Connect(e.Server.ClientURL()); err != nil {
		e.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if e.JS, err = publish.NewJetStream(e.NC, MaxPending); err != nil {
		e.Close()
		return nil, err
	}
	if err := e.openState(ctx); err != nil {
		e.Close()
		return nil, err
	}
	e.upstream = httptest.NewServer(http.HandlerFunc(serveRecords))
	return e, nil
}

// Reset deletes and recreates the stream and the state buckets, so every benchmark run
// starts from an empty store and an empty duplicate-id map (which the server keeps for
// the whole duplicate window and which would otherwise slow later runs down).
func (e *Env) Reset(ctx context.Context) error {
	for _, name := range []string{"ENERGY", "KV_gridstream_cursors", "KV_gridstream_seen"} {
		if err := e.JS.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("reset %s: %w", name, err)
		}
	}
	// The server removes a deleted stream's files in the background; creating it again at
	// once can fail with "error creating store for stream". Retry briefly.
	var err error
	for range 20 {
		if err = e.openState(ctx); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

func (e *Env) openState(ctx context.Context) error {
	var err error
	e.Stream, err = publish.EnsureStream(ctx, e.JS, publish.StreamConfig{
		Name: "ENERGY", Prefix: "energy", Duplicates: 2 * time.Minute, Storage: "file",
	})
	if err != nil {
		return err
	}
	ckv, err := publish.OpenKV(ctx, e.JS, "gridstream_cursors", "bench cursors", publish.KVConfig{})
	if err != nil {
		return err
	}
	e.Cursors = pollers.NewKVCursors(ckv)
	if e.SeenKV, err = publish.OpenKV(ctx, e.JS, "gridstream_seen", "bench seen-store", publish.KVConfig{}); err != nil {
		return err
	}
	e.Seen = publish.NewKVSeen(e.JS, e.SeenKV)
	return nil
}

// Close stops everything and removes the temp dir.
func (e *Env) Close() {
	if e.upstream != nil {
		e.upstream.Close()
	}
	if e.NC != nil {
		e.NC.Close()
	}
	if e.Server != nil {
		e.Server.Shutdown()
		e.Server.WaitForShutdown()
	}
	_ = os.RemoveAll(e.Dir)
}

// run returns a fresh partition name, so every benchmark run starts with no cursor, an
// empty seen set and event ids no earlier run used.
func (e *Env) run(kind string) string {
	return kind + "-" + strconv.FormatInt(e.runs.Add(1), 10)
}

// payload is a PayloadSize-byte JSON value (the raw figure's message body).
func payload() []byte {
	b := []byte(`{"pad":"`)
	for len(b) < PayloadSize-2 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}
