package publish

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/secret"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ConnConfig says how to reach NATS. An empty URL means: start an embedded nats-server
// with JetStream in DataDir (the zero-setup default for the demo and for trying
// gridstream out; production points at a NATS cluster).
type ConnConfig struct {
	URL       string
	CredsFile string // NATS .creds file (JWT + nkey seed)
	NKeyFile  string // nkey seed file
	User      string
	Password  secret.Value
	Token     secret.Value
	CAFile    string // custom CA for TLS; system roots otherwise
	CertFile  string // client certificate for mutual TLS
	KeyFile   string
	Name      string // connection name shown by the server
	DataDir   string // embedded server's JetStream store
}

// Conn is a NATS connection, and the embedded server behind it if one was started.
type Conn struct {
	NC       *nats.Conn
	Embedded *server.Server
}

// Close drains the connection (so in-flight publishes finish) and stops an embedded server.
func (c *Conn) Close() {
	if c.NC != nil {
		_ = c.NC.Drain()
		deadline := time.Now().Add(10 * time.Second)
		for !c.NC.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		c.NC.Close()
	}
	if c.Embedded != nil {
		c.Embedded.Shutdown()
		c.Embedded.WaitForShutdown()
	}
}

// Connect connects to NATS, or starts the embedded server when c.URL is empty.
func Connect(ctx context.Context, c ConnConfig, log *slog.Logger) (*Conn, error) {
	conn := &Conn{}
	url := c.URL
	if url == "" {
		srv, err := StartEmbedded(c.DataDir)
		if err != nil {
			return nil, err
		}
		conn.Embedded = srv
		url = srv.ClientURL()
		log.Info("no NATS URL configured: started an embedded nats-server with JetStream",
			"data_dir", c.DataDir, "url", url, "hint", "set GRIDSTREAM_NATS_URL for production")
	}
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey file %s: %w", c.NKeyFile, err)
		}
		opts = append(opts, o)
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password.Reveal()))
	}
	if !c.Token.IsZero() {
		opts = append(opts, nats.Token(c.Token.Reveal()))
	}
	if c.CAFile != "" || c.CertFile != "" {
		tc, err := tlsConfig(c)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if conn.Embedded != nil {
			conn.Embedded.Shutdown()
		}
		// The URL may carry user:password; say where without it.
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), err)
	}
	conn.NC = nc
	return conn, nil
}

func tlsConfig(c ConnConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("nats CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats CA file %s: no PEM certificate found", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func redactURL(u string) string {
	if i, j := strings.LastIndex(u, "@"), strings.Index(u, "://"); i > 0 && j >= 0 && i > j {
		return u[:j+3] + "[REDACTED]@" + u[i+1:]
	}
	return u
}

// StartEmbedded starts an in-process nats-server with JetStream storing in dir, listening
// on loopback only.
func StartEmbedded(dir string) (*server.Server, error) {
	if dir == "" {
		return nil, errors.New("embedded nats-server: empty data directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedded nats-server data directory: %w", err)
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "gridstream-embedded",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   abs,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("embedded nats-server did not become ready in 10s")
	}
	return srv, nil
}
