package natstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestClusterR3StreamSurvivesLeaderLossAndRestart publishes to an R3 stream on a 3-node
// cluster, stops the stream leader, publishes more once a new leader is elected, restarts
// the node on its store, and finds every message once.
func TestClusterR3StreamSurvivesLeaderLossAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	t.Parallel()
	c := RunCluster(t, 3)
	js := c.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	publish := func(i int) {
		t.Helper()
		// Publishes fail while a leader is elected; the msg id makes a retry safe.
		for {
			// Each attempt has its own deadline: a request lost with the stopped node
			// would otherwise wait out the whole test's.
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(actx, "t.x", []byte("m"), jetstream.WithMsgID(fmt.Sprint(i)))
			acancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range 10 {
		publish(i)
	}
	c.WaitStreamsCurrent() // every replica caught up, so two nodes keep a quorum
	leader := -1
	deadline := time.Now().Add(ClusterReadyTimeout)
	for leader = c.StreamLeader("T"); leader < 0; leader = c.StreamLeader("T") {
		if time.Now().After(deadline) {
			t.Fatal("no stream leader")
		}
		time.Sleep(25 * time.Millisecond)
	}
	c.Stop(leader)
	if c.Running() != 2 {
		t.Fatalf("%d nodes running after a stop", c.Running())
	}
	for i := 10; i < 20; i++ {
		publish(i)
	}
	c.Restart(leader)
	for i := range 20 { // repeats are dropped by the msg id
		publish(i)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 20 {
		t.Fatalf("%d messages, want 20", info.State.Msgs)
	}
	if n := len(info.Cluster.Replicas) + 1; n != 3 {
		t.Fatalf("stream has %d replicas, want 3", n)
	}
}
