package ingrid_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gridstream/gridstream/internal/pollers/ingrid"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
)

// TestINGRIDOverTLSVerifiesTheTokenAndAPIHostsAndAcceptsACustomCA polls the INGRID sandbox
// served over TLS by a private CA: with the system roots the token call fails on the
// certificate (no secret is sent), with the CA in Options.TLSConfig the poll publishes.
func TestINGRIDOverTLSVerifiesTheTokenAndAPIHostsAndAcceptsACustomCA(t *testing.T) {
	t.Parallel()
	fake := sandbox.NewINGRID(sandbox.INGRIDOptions{})
	srv := httptest.NewTLSServer(fake)
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	env := pollertest.New(t)
	for _, tc := range []struct {
		name string
		tls  *tls.Config
		ok   bool
	}{
		{"system roots", nil, false},
		{"custom CA", &tls.Config{RootCAs: pool}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := ingrid.New(ingrid.Options{
				APIBase: srv.URL, TokenURL: srv.URL + sandbox.INGRIDTokenPath, TLSConfig: tc.tls,
				ClientID: sandbox.INGRIDDemoClientID, ClientSecret: secret.New(sandbox.INGRIDDemoClientSecret),
				Contracts: []string{sandbox.INGRIDDemoContract}, Datasets: []string{"services"},
			})
			if err != nil {
				t.Fatal(err)
			}
			jobs, err := src.Jobs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			before := fake.Counters.Get("token.issued")
			res, err := env.Poll(context.Background(), jobs[0])
			if !tc.ok {
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("poll over an unverifiable certificate: %v", err)
				}
				if fake.Counters.Get("token.issued") != before {
					t.Error("a token was issued over an unverified connection")
				}
				return
			}
			if err != nil || res.Published == 0 {
				t.Fatalf("poll with the custom CA: %+v, %v", res, err)
			}
		})
	}
}
