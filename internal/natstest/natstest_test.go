package natstest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestRunServesJetStream(t *testing.T) {
	t.Parallel()
	s := Run(t)
	ctx := context.Background()
	if _, err := s.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.Publish(ctx, "t.x", []byte("hi")); err != nil {
		t.Fatal(err)
	}
}
