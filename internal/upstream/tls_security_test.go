package upstream_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gridstream/gridstream/internal/upstream"
)

// TestUpstreamTLSIsVerifiedByDefaultCustomCAWorksAndInsecureIsRefused reads an
// httptest TLS server (a certificate from its own CA): the default client refuses it, a
// client given that CA reads it, and InsecureSkipVerify is refused outright.
func TestUpstreamTLSIsVerifiedByDefaultCustomCAWorksAndInsecureIsRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	cases := []struct {
		name    string
		tls     *tls.Config
		wantErr func(error) bool
	}{
		{"default roots refuse an unknown CA", nil, func(err error) bool {
			var ua x509.UnknownAuthorityError
			return errors.As(err, &ua) || strings.Contains(err.Error(), "certificate")
		}},
		{"an empty custom pool trusts nothing", &tls.Config{RootCAs: x509.NewCertPool()}, func(err error) bool { return strings.Contains(err.Error(), "certificate") }},
		{"InsecureSkipVerify is refused", &tls.Config{InsecureSkipVerify: true}, func(err error) bool { return errors.Is(err, upstream.ErrInvalidOptions) }}, //nolint:gosec // the point of the test
		{"the custom CA is trusted", &tls.Config{RootCAs: pool}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := upstream.New(upstream.Options{Name: "tls", BaseURL: srv.URL, TLSConfig: tc.tls, MaxRetries: 1})
			body, err := c.Get(context.Background(), "/page", nil)
			if tc.wantErr == nil {
				if err != nil || string(body) != `{"ok":true}` {
					t.Fatalf("Get = %q, %v", body, err)
				}
				return
			}
			if err == nil {
				t.Fatal("Get succeeded against a certificate that must not verify")
			}
			if !tc.wantErr(err) {
				t.Errorf("unexpected error kind: %v", err)
			}
		})
	}
}

// TestUpstreamPlainHTTPIsRefusedForRemoteHosts: tokens never travel in clear to a
// non-loopback host unless AllowPlainHTTP says so.
func TestUpstreamPlainHTTPIsRefusedForRemoteHosts(t *testing.T) {
	t.Parallel()
	c := upstream.New(upstream.Options{Name: "clear", BaseURL: "http://api.example.com"})
	if _, err := c.Get(context.Background(), "/x", nil); !errors.Is(err, upstream.ErrInvalidOptions) {
		t.Fatalf("plain http to a remote host: %v, want ErrInvalidOptions", err)
	}
}
