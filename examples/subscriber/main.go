// Command subscriber is an example gridstream consumer that uses no gridstream code: it
// reads the ENERGY stream with a durable JetStream pull consumer (nats.go), decodes each
// message with the CloudEvents Go SDK's NATS JetStream binding, prints one line per event
// and acknowledges it. Ctrl-C stops it after the event in hand is acknowledged; started
// again with the same --durable, it goes on where it stopped.
//
//	go run ./examples/subscriber --server nats://127.0.0.1:4222 --filter 'energy.ingrid.>'
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "subscriber:", err)
		os.Exit(1)
	}
}

// run consumes until ctx ends, then stops fetching, lets the event in hand finish and
// returns nil.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("subscriber", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", nats.DefaultURL, "NATS server URL(s)")
	creds := fs.String("creds", "", "NATS credentials file (optional)")
	stream := fs.String("stream", "ENERGY", "stream name")
	durable := fs.String("durable", "example-subscriber", "durable consumer name: restarts resume where they stopped")
	filter := fs.String("filter", "energy.>", "subject filter: energy.<source>.<dataset>.<partition>, with * and > wildcards")
	since := fs.String("since", "", "on first start, deliver from this RFC 3339 time (default: from the first event)")
	bodyMax := fs.Int("body", 80, "characters of the body to print")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := []nats.Option{nats.Name("gridstream-example-subscriber")}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := nats.Connect(*server, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", *server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cc := jetstream.ConsumerConfig{
		Durable:       *durable,
		FilterSubject: *filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	// An existing durable keeps its position; its deliver policy cannot change.
	cons, err := js.CreateOrUpdateConsumer(ctx, *stream, cc)
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", *durable, *stream, err)
	}
	sub, err := cons.Consume(func(m jetstream.Msg) {
		line, err := format(m, *bodyMax)
		if err != nil {
			// Not a CloudEvent: say so and leave it for redelivery (a real consumer would
			// Term it or send it to a dead-letter subject).
			fmt.Fprintf(stderr, "%s: %v\n", m.Subject(), err)
			_ = m.Nak()
			return
		}
		fmt.Fprintln(stdout, line)
		if err := m.Ack(); err != nil {
			fmt.Fprintf(stderr, "ack %s: %v\n", m.Subject(), err)
		}
	})
	if err != nil {
		return err
	}
	<-ctx.Done()
	sub.Drain() // stop pulling; messages already delivered are still handled
	select {
	case <-sub.Closed():
	case <-time.After(10 * time.Second):
		sub.Stop()
	}
	return nil
}

// format decodes a message with the CloudEvents SDK and renders one line:
// time, type, subject (entity key), change, and the start of the body.
func format(m jetstream.Msg, bodyMax int) (string, error) {
	msg := cejs.NewMessage(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
	ev, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return "", fmt.Errorf("not a CloudEvent: %w", err)
	}
	change, _ := ev.Extensions()["change"].(string)
	body := strings.Join(strings.Fields(string(ev.Data())), " ")
	if len(body) > bodyMax {
		body = body[:bodyMax] + "…"
	}
	return fmt.Sprintf("%s  %-45s %-28s %-7s %s",
		ev.Time().UTC().Format(time.RFC3339), ev.Type(), ev.Subject(), change, body), nil
}
