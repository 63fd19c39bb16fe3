package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes events asynchronously, at most MaxPending unacknowledged at a time
// on its JetStream context, and lets the caller await every ack of a batch.
type Publisher struct {
	js jetstream.JetStream
}

// NewPublisher wraps js; create js with jetstream.WithPublishAsyncMaxPending to bound
// the in-flight messages (see NewJetStream).
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// NewJetStream makes the JetStream context gridstream publishes through, with bounded
// async pending so a slow or absent server applies back-pressure instead of growing memory.
func NewJetStream(nc *nats.Conn, maxPending int) (jetstream.JetStream, error) {
	if maxPending <= 0 {
		maxPending = 1024
	}
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending), jetstream.WithPublishAsyncTimeout(30*time.Second))
}

// stallWait is how long one publish attempt waits for room under the pending limit
// before Publish checks ctx and tries again (one option value, not one per event).
var stallWait = jetstream.WithStallWait(time.Second)

// Batch is a set of in-flight publishes whose acks are awaited together.
type Batch struct {
	futures []jetstream.PubAckFuture
}

// Len is the number of events in the batch.
func (b *Batch) Len() int { return len(b.futures) }

// Publish sends e without waiting for its ack; the ack is awaited by Batch.Wait. When
// the pending limit is reached it waits for room (or ctx).
func (p *Publisher) Publish(ctx context.Context, b *Batch, e *Event) error {
	msg := e.Msg(ctx)
	for {
		f, err := p.js.PublishMsgAsync(msg, stallWait)
		if err == nil {
			b.futures = append(b.futures, f)
			return nil
		}
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return fmt.Errorf("publish %s: %w", e.Subject, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
	}
}

// Result is what the stream said about a batch.
type Result struct {
	// Stored is the number of events the stream stored; Duplicates were already in it
	// (same Nats-Msg-Id inside the duplicate window) and were dropped by JetStream.
	Stored, Duplicates int
}

// Wait blocks until every event of the batch is acknowledged. Any error means at least
// one event may not be stored: the caller must not advance its cursor.
func (b *Batch) Wait(ctx context.Context) (Result, error) {
	var r Result
	var firstErr error
	for _, f := range b.futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				r.Duplicates++
			} else {
				r.Stored++
			}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = fmt.Errorf("publish %s: %w", f.Msg().Subject, err)
			}
		case <-ctx.Done():
			return r, fmt.Errorf("waiting for publish acks: %w", ctx.Err())
		}
	}
	return r, firstErr
}
