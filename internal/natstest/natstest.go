// Package natstest starts a real in-process nats-server with JetStream for tests.
// There is no mock of the bus anywhere in gridstream: every test talks to this server
// over a real connection.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running JetStream server and a connection to it.
type Server struct {
	*server.Server
	URL string
	NC  *nats.Conn
	JS  jetstream.JetStream
}

// Run starts nats-server on a random port with JetStream in t.TempDir() and stops it
// (and closes the connection) when the test ends.
func Run(tb testing.TB) *Server {
	tb.Helper()
	return RunIn(tb, tb.TempDir())
}

// RunIn starts the server with its JetStream store in dir, so a test can restart a
// server on the same data.
func RunIn(tb testing.TB, dir string) *Server {
	tb.Helper()
	return RunAt(tb, dir, -1)
}

// RunAt starts the server on port (-1: a random one) with its store in dir, so a test can
// stop a server and start it again where its clients reconnect.
func RunAt(tb testing.TB, dir string, port int) *Server {
	tb.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port = port
	opts.JetStream = true
	opts.StoreDir = dir
	srv := natstest.RunServer(&opts)
	tb.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatalf("connect to test nats-server: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return &Server{Server: srv, URL: srv.ClientURL(), NC: nc, JS: js}
}
