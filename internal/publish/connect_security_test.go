package publish_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/publish"
	"github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
)

// testCA is a private CA with one server certificate for 127.0.0.1 and localhost.
type testCA struct {
	caFile   string
	server   tls.Certificate
	otherCA  string // a second, unrelated CA
	caPool   *x509.CertPool
	caDER    []byte
	tempRoot string
}

func newCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer := parentKey
	if signer == nil {
		signer, parent = key, tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	mkCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, key := newCert(t, tmpl, nil, nil)
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key, der
	}
	ca, caKey, caDER := mkCA("gridstream test CA")
	_, _, otherDER := mkCA("unrelated CA")
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, leafKey := newCert(t, leaf, ca, caKey)
	c := &testCA{caFile: filepath.Join(dir, "ca.pem"), otherCA: filepath.Join(dir, "other.pem"), caDER: caDER, tempRoot: dir}
	writePEM(t, c.caFile, "CERTIFICATE", caDER)
	writePEM(t, c.otherCA, "CERTIFICATE", otherDER)
	c.server = tls.Certificate{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}
	c.caPool = x509.NewCertPool()
	c.caPool.AddCert(ca)
	return c
}

// runTLSNATS starts a nats-server that only speaks TLS with the CA's server certificate.
func runTLSNATS(t *testing.T, ca *testCA) *server.Server {
	t.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	opts.TLS = true
	opts.TLSVerify = false
	opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.server}, MinVersion: tls.VersionTLS12}
	opts.TLSTimeout = 2
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	return srv
}

// TestNATSTLSIsVerifiedByDefaultAndCustomCAWorks connects to a TLS-only nats-server whose
// certificate comes from a private CA: without GRIDSTREAM_NATS_CA_FILE the system roots
// refuse it; with an unrelated CA it is refused; with the right CA it connects and publishes.
func TestNATSTLSIsVerifiedByDefaultAndCustomCAWorks(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	srv := runTLSNATS(t, ca)
	url := "tls://" + srv.Addr().String()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name   string
		url    string
		caFile string
		ok     bool
	}{
		{"system roots refuse a private CA", url, "", false},
		{"plain nats:// URL is upgraded and verified", "nats://" + srv.Addr().String(), "", false},
		{"an unrelated CA is refused", url, ca.otherCA, false},
		{"the right custom CA connects", url, ca.caFile, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := publish.Connect(ctx, publish.ConnConfig{URL: tc.url, CAFile: tc.caFile, Name: "tls-test"}, log)
			if !tc.ok {
				if err == nil {
					conn.Close()
					t.Fatal("connected to a server whose certificate should not verify")
				}
				if !strings.Contains(strings.ToLower(err.Error()), "certificate") && !strings.Contains(strings.ToLower(err.Error()), "tls") {
					t.Errorf("error does not say why: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("connect with the custom CA: %v", err)
			}
			defer conn.Close()
			if !conn.NC.TLSRequired() {
				t.Error("connection is not TLS")
			}
			js, err := publish.NewJetStream(conn.NC, 16)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := publish.EnsureStream(ctx, js, publish.StreamConfig{Name: "TLS", Prefix: "tls", Duplicates: time.Minute, Storage: "memory"}); err != nil {
				t.Fatalf("stream over TLS: %v", err)
			}
		})
	}
}
