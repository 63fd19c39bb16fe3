package natstest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterReadyTimeout bounds how long RunCluster and Cluster.Restart wait for the
// JetStream meta group to elect a leader and see every node. Raft elections on a loaded
// 2-core machine under -race take a few seconds; the bound is generous so a slow
// election is never mistaken for a failure.
const ClusterReadyTimeout = 45 * time.Second

// globalAccount is the account clients without credentials use.
const globalAccount = "$G"

// Cluster is a running in-process NATS cluster with clustered JetStream, so tests can
// check R3 streams and buckets and the loss of a node.
type Cluster struct {
	tb    testing.TB
	Nodes []*Node
	// URLs is every node's client URL, comma-separated (what GRIDSTREAM_NATS_URL takes).
	// A restarted node keeps its client port, so the list stays valid.
	URLs string
}

// Node is one server of a Cluster. Server is nil while the node is stopped.
type Node struct {
	*server.Server
	Name string
	// Dir is the node's JetStream store; a restart reuses it.
	Dir  string
	opts server.Options
}

// Connect opens a client connection to every node that reconnects for as long as the test
// runs (nodes are stopped and restarted), closed when the test ends, and its JetStream.
func (c *Cluster) Connect() jetstream.JetStream {
	c.tb.Helper()
	nc, err := nats.Connect(c.URLs, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.tb.Fatal(err)
	}
	return js
}

// RunCluster starts n nats-servers with JetStream, routed into one cluster on
// 127.0.0.1, each with its own store under tb.TempDir(), waits until the JetStream meta
// group has a leader that sees all n nodes, and shuts every node down when the test ends.
func RunCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: cluster of %d nodes", n)
	}
	// Route ports are picked up front: every node's Routes must name all of them, and a
	// restarted node must come back on the same one.
	clientPorts, routePorts := freePorts(tb, n), freePorts(tb, n)
	routes := make([]string, n)
	for i, p := range routePorts {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{tb: tb}
	urls := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		node := &Node{Name: name, Dir: filepath.Join(tb.TempDir(), name)}
		node.opts = server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       clientPorts[i],
			NoLog:      true,
			NoSigs:     true,
			JetStream:  true,
			StoreDir:   node.Dir,
			Cluster: server.ClusterOpts{
				Name: "gridstream-test",
				Host: "127.0.0.1",
				Port: routePorts[i],
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		}
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])
		c.Nodes = append(c.Nodes, node)
	}
	c.URLs = strings.Join(urls, ",")
	tb.Cleanup(func() {
		for i := range c.Nodes {
			c.Stop(i)
		}
	})
	for i := range c.Nodes {
		c.start(i)
	}
	c.WaitReady()
	return c
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1 and releases them for the
// servers to bind.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("natstest: pick a free port: %v", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

func (c *Cluster) start(i int) {
	c.tb.Helper()
	node := c.Nodes[i]
	opts := node.opts // NewServer keeps and mutates its options; give it a copy.
	srv, err := server.NewServer(&opts)
	if err != nil {
		c.tb.Fatalf("natstest: node %s: %v", node.Name, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(ClusterReadyTimeout) {
		srv.Shutdown()
		c.tb.Fatalf("natstest: node %s not ready for connections within %s", node.Name, ClusterReadyTimeout)
	}
	node.Server = srv
}

// Stop shuts node i down (its store stays for Restart); a stopped node stays stopped.
func (c *Cluster) Stop(i int) {
	node := c.Nodes[i]
	if node.Server == nil {
		return
	}
	node.Server.Shutdown()
	node.Server.WaitForShutdown()
	node.Server = nil
}

// Restart starts a stopped node i again on its store and ports, and waits until the
// cluster is ready with it and it has caught up with every stream it replicates, so
// that losing another node afterwards leaves every stream a quorum.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if c.Nodes[i].Server != nil {
		c.tb.Fatalf("natstest: node %s is running", c.Nodes[i].Name)
	}
	c.start(i)
	c.WaitReady()
	c.WaitStreamsCurrent()
}

// WaitStreamsCurrent waits until every stream (KV buckets included) of the default
// account has a leader and every running node that replicates it is caught up.
func (c *Cluster) WaitStreamsCurrent() {
	c.tb.Helper()
	c.waitUntil("streams not current", c.streamsCurrent)
}

// waitUntil polls cond until it returns nil, or fails the test with what and cond's last
// error after ClusterReadyTimeout.
func (c *Cluster) waitUntil(what string, cond func() error) {
	c.tb.Helper()
	deadline := time.Now().Add(ClusterReadyTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("natstest: %s within %s: %v", what, ClusterReadyTimeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *Cluster) streamsCurrent() error {
	for _, node := range c.Nodes {
		if node.Server == nil {
			continue
		}
		info, err := node.Jsz(&server.JSzOptions{Account: globalAccount, Streams: true})
		if err != nil {
			return fmt.Errorf("node %s: jsz: %w", node.Name, err)
		}
		for _, acc := range info.AccountDetails {
			for _, st := range acc.Streams {
				if c.StreamLeader(st.Name) < 0 {
					return fmt.Errorf("stream %s has no leader", st.Name)
				}
				if !node.JetStreamIsStreamCurrent(globalAccount, st.Name) {
					return fmt.Errorf("node %s is not current with stream %s", node.Name, st.Name)
				}
			}
		}
	}
	return nil
}

// Running is the number of nodes not stopped.
func (c *Cluster) Running() int {
	n := 0
	for _, node := range c.Nodes {
		if node.Server != nil {
			n++
		}
	}
	return n
}

// MetaLeader is the index of the node that leads the JetStream meta group, or -1.
func (c *Cluster) MetaLeader() int {
	for i, node := range c.Nodes {
		if node.Server != nil && node.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// StreamLeader is the index of the node that leads stream's Raft group (in the
// default account; KV bucket B is stream KV_B), or -1 if none does right now.
func (c *Cluster) StreamLeader(stream string) int {
	for i, node := range c.Nodes {
		if node.Server != nil && node.JetStreamIsStreamLeader(globalAccount, stream) {
			return i
		}
	}
	return -1
}

// WaitReady waits until one running node leads the JetStream meta group, that leader
// sees every running node online with JetStream, and every running node is current
// with the meta log, so an R<=Running() stream can be placed at once.
func (c *Cluster) WaitReady() {
	c.tb.Helper()
	c.waitUntil("cluster not ready", c.ready)
}

func (c *Cluster) ready() error {
	leader := c.MetaLeader()
	if leader < 0 {
		return fmt.Errorf("no JetStream meta leader")
	}
	running := c.Running()
	if peers := c.Nodes[leader].JetStreamClusterPeers(); len(peers) != running {
		return fmt.Errorf("meta leader %s sees %d of %d nodes online (%v)", c.Nodes[leader].Name, len(peers), running, peers)
	}
	for _, node := range c.Nodes {
		if node.Server != nil && !node.JetStreamIsCurrent() {
			return fmt.Errorf("node %s is not current with the meta leader", node.Name)
		}
	}
	return nil
}
