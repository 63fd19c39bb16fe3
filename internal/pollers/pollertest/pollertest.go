// Package pollertest runs jobs through the real pipeline (real in-process NATS, stream,
// KV cursors and seen-store) for the source packages' end-to-end tests.
package pollertest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Env is a pipeline on a private NATS server.
type Env struct {
	NATS    *natstest.Server
	JS      jetstream.JetStream
	Stream  jetstream.Stream
	Runner  *pollers.Runner
	Cursors *pollers.KVCursors
	Seen    *publish.KVSeen
}

// Option changes the Env before its stores open.
type Option func(*options)

type options struct {
	now    func() time.Time
	server *natstest.Server
}

// WithNow sets the pipeline's clock (share the fake clock of the sandbox and quota).
func WithNow(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithServer runs the Env on an existing server (e.g. to restart the pipeline on the same state).
func WithServer(s *natstest.Server) Option { return func(o *options) { o.server = s } }

// New starts NATS (unless WithServer), creates the ENERGY stream on energy.> and the
// cursor and seen buckets, and returns the pipeline.
func New(tb testing.TB, opts ...Option) *Env {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	srv := o.server
	if srv == nil {
		srv = natstest.Run(tb)
	}
	ctx := context.Background()
	js, err := publish.NewJetStream(srv.NC, 512)
	if err != nil {
		tb.Fatal(err)
	}
	stream, err := publish.EnsureStream(ctx, js, publish.StreamConfig{Name: "ENERGY", Prefix: "energy", Duplicates: 2 * time.Minute, Storage: "file"})
	if err != nil {
		tb.Fatal(err)
	}
	ckv, err := publish.OpenKV(ctx, js, "gridstream_cursors", "test cursors", publish.KVConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	skv, err := publish.OpenKV(ctx, js, "gridstream_seen", "test seen-store", publish.KVConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	env := &Env{NATS: srv, JS: js, Stream: stream, Cursors: pollers.NewKVCursors(ckv), Seen: publish.NewKVSeen(js, skv)}
	env.Runner = &pollers.Runner{
		Publisher: publish.NewPublisher(js), Cursors: env.Cursors, Seen: env.Seen,
		Prefix: "energy", Log: slog.New(slog.DiscardHandler), Now: o.now,
	}
	return env
}

// Poll runs one poll of job.
func (e *Env) Poll(ctx context.Context, job *pollers.Job) (pollers.PollResult, error) {
	return e.Runner.Poll(ctx, job)
}

// Event is one stored message.
type Event struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
}

// Events returns every message in the stream, in order.
func (e *Env) Events(tb testing.TB) []Event {
	tb.Helper()
	ctx := context.Background()
	info, err := e.Stream.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := e.Stream.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, Event{Seq: seq, Subject: m.Subject, Header: m.Header, Data: m.Data})
	}
	return out
}
