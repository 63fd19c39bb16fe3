package main

// The producing side of these tests is gridstream itself (the demo pipeline against the
// sandbox APIs); the reading side uses only nats.go and the CloudEvents Go SDK, as a
// consumer would.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	cejs "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/gridstream/gridstream/internal/connector"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/syncbuf"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsURL serves the stream the demo pipeline filled (set by TestMain).
var natsURL string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "gridstream-subscriber-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sum, err := connector.RunDemo(ctx, connector.DemoOptions{
			For: 3 * time.Second, Out: io.Discard, Log: slog.New(slog.DiscardHandler),
			DataDir: dir, Users: 2, HTTPAddr: "127.0.0.1:0",
		})
		if err != nil || sum.Events == 0 {
			fmt.Fprintf(os.Stderr, "demo pipeline: %d events, %v\n", sum.Events, err)
			return 1
		}
		srv, err := publish.StartEmbedded(dir) // serve what the demo stored
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		natsURL = srv.ClientURL()
		return m.Run()
	}())
}

func connect(t *testing.T) (*nats.Conn, jetstream.Stream) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), "ENERGY")
	if err != nil {
		t.Fatal(err)
	}
	return nc, s
}

// storedMsgs returns every message of the stream on filter, read with an ordered consumer.
func storedMsgs(t *testing.T, s jetstream.Stream, filter string) []*nats.Msg {
	t.Helper()
	ctx := context.Background()
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var out []*nats.Msg
	for len(out) < n {
		batch, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// lines is what the subscriber printed so far, a line each.
func lines(b *syncbuf.Buffer) []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}

var lineRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  io\.gridstream\.(ingrid|net2grid|grex)\.[a-z0-9-]+ +\S.* +(created|updated) +[\[{]`)

func TestSubscriberPrintsAndAcksEveryEvent(t *testing.T) {
	for _, tc := range []struct {
		name, filter, typePrefix string
	}{
		{"every source", "energy.>", "io.gridstream."},
		{"one source", "energy.ingrid.>", "io.gridstream.ingrid."},
		{"one dataset", "energy.net2grid.readings.*", "io.gridstream.net2grid.readings"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, s := connect(t)
			want := len(storedMsgs(t, s, tc.filter))
			if want == 0 {
				t.Fatalf("the demo stored nothing on %s", tc.filter)
			}
			durable := "test-" + strings.ReplaceAll(tc.name, " ", "-")
			var out, errs syncbuf.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- run(ctx, []string{"--server", natsURL, "--stream", "ENERGY", "--durable", durable, "--filter", tc.filter}, &out, &errs)
			}()
			deadline := time.Now().Add(15 * time.Second)
			for len(lines(&out)) < want && time.Now().Before(deadline) {
				select {
				case err := <-done:
					t.Fatalf("subscriber returned early: %v (stderr %q)", err, errs.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			cancel() // Ctrl-C
			if err := <-done; err != nil {
				t.Fatalf("subscriber after Ctrl-C: %v", err)
			}
			printed := lines(&out)
			if len(printed) != want {
				t.Fatalf("printed %d lines, want %d (stderr %q)", len(printed), want, errs.String())
			}
			for _, l := range printed {
				if !lineRE.MatchString(l) || !strings.Contains(l, tc.typePrefix) {
					t.Fatalf("line %q: want time, %s type, subject, change, body", l, tc.typePrefix)
				}
			}
			// Everything delivered was acknowledged: a restart resumes after it.
			nc, err := nats.Connect(natsURL)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			c, err := js.Consumer(context.Background(), "ENERGY", durable)
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.NumAckPending != 0 || info.NumPending != 0 || int(info.AckFloor.Consumer) != want {
				t.Fatalf("consumer after run: ack pending %d, pending %d, ack floor %d; want 0, 0, %d",
					info.NumAckPending, info.NumPending, info.AckFloor.Consumer, want)
			}
		})
	}
}

// TestCloudEventsSDKReadsGridstreamEvents decodes every stored event with the CloudEvents
// Go SDK's NATS JetStream binding, and checks each attribute against the subject, the
// JetStream dedupe id and the body.
func TestCloudEventsSDKReadsGridstreamEvents(t *testing.T) {
	_, s := connect(t)
	msgs := storedMsgs(t, s, "energy.>")
	types := map[string]int{}
	for _, m := range msgs {
		ev, err := binding.ToEvent(context.Background(), cejs.NewMessage(m))
		if err != nil {
			t.Fatalf("%s: binding.ToEvent: %v (headers %v)", m.Subject, err, m.Header)
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("%s: invalid CloudEvent: %v", m.Subject, err)
		}
		tok := strings.Split(m.Subject, ".")
		if len(tok) != 4 || tok[0] != "energy" {
			t.Fatalf("subject %q: want energy.<source>.<dataset>.<partition>", m.Subject)
		}
		checks := []struct{ what, got, want string }{
			{"specversion", ev.SpecVersion(), "1.0"},
			{"id", ev.ID(), m.Header.Get(nats.MsgIdHdr)},
			{"source", ev.Source(), "/gridstream/" + tok[1] + "/" + tok[2] + "/" + tok[3]},
			{"type", ev.Type(), "io.gridstream." + tok[1] + "." + tok[2]},
		}
		for _, c := range checks {
			if c.got != c.want || c.got == "" {
				t.Fatalf("%s: %s = %q, want %q", m.Subject, c.what, c.got, c.want)
			}
		}
		if ev.Subject() == "" || ev.Time().IsZero() {
			t.Fatalf("%s: subject %q time %v: want the entity key and the record's time", m.Subject, ev.Subject(), ev.Time())
		}
		if change := ev.Extensions()["change"]; change != "created" && change != "updated" {
			t.Fatalf("%s: extension change = %v", m.Subject, change)
		}
		if !bytes.Equal(ev.Data(), m.Data) {
			t.Fatalf("%s: data differs from the message body", m.Subject)
		}
		var body any
		if err := ev.DataAs(&body); err != nil {
			t.Fatalf("%s: DataAs: %v", m.Subject, err)
		}
		types[ev.Type()]++
	}
	for _, want := range []string{"io.gridstream.ingrid.", "io.gridstream.net2grid.readings", "io.gridstream.grex."} {
		found := false
		for ty := range types {
			found = found || strings.HasPrefix(ty, want)
		}
		if !found {
			t.Errorf("no %s* event among %v", want, types)
		}
	}
}

// TestCloudEventsSDKSeesTheJSONContentType checks that datacontenttype reaches the SDK. The
// NATS binding reads it from a lower-case "content-type" header (NATS headers are
// case-sensitive), which is what gridstream writes.
func TestCloudEventsSDKSeesTheJSONContentType(t *testing.T) {
	_, s := connect(t)
	m := storedMsgs(t, s, "energy.>")[0]
	ev, err := binding.ToEvent(context.Background(), cejs.NewMessage(m))
	if err != nil {
		t.Fatal(err)
	}
	if ev.DataContentType() != "application/json" {
		t.Fatalf("datacontenttype %q, want application/json", ev.DataContentType())
	}
	if !json.Valid(ev.Data()) {
		t.Fatal("data is not JSON")
	}
}
