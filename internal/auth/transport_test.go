package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// staticSource hands out one token and counts invalidations.
type staticSource struct {
	tok         string
	err         error
	invalidated int
}

func (s *staticSource) Token(context.Context) (*oauth2.Token, error) {
	if s.err != nil {
		return nil, s.err
	}
	return &oauth2.Token{AccessToken: s.tok}, nil
}
func (s *staticSource) Invalidate()    { s.invalidated++ }
func (s *staticSource) Health() Health { return Health{State: StateOK} }

func TestTransportSetsAuthorizationOnAClone(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, scheme, want string
	}{
		{"default bearer", "", "Bearer tok-123456"},
		{"custom scheme", "Token", "Token tok-123456"},
		{"bare token", SchemeNone, "tok-123456"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r.Header.Get("Authorization")
			}))
			t.Cleanup(srv.Close)
			tr := &Transport{Base: srv.Client().Transport, Source: &staticSource{tok: "tok-123456"}, Scheme: tc.scheme}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got != tc.want {
				t.Fatalf("Authorization %q, want %q", got, tc.want)
			}
			if req.Header.Get("Authorization") != "" {
				t.Fatal("the caller's request was modified")
			}
		})
	}
}

func TestTransportTokenErrorHasNoRequestSecrets(t *testing.T) {
	t.Parallel()
	src := &staticSource{err: ErrLoginRequired}
	tr := &Transport{Source: src}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://user:pw-secret-xyz@example.com/x", nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "pw-secret-xyz") {
		t.Fatalf("error holds URL credentials: %v", err)
	}
}

func TestUnauthorizedInvalidatesAndNextTokenIsNew(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		source func(t *testing.T, ts *tokenServer) Source
	}{
		{"rotating", func(t *testing.T, ts *tokenServer) Source {
			var logs logBuffer
			cfg := rotatingConfig(ts, NewMemoryStore(), newFakeClock(), &logs)
			bootstrap(t, ts, cfg)
			return newRotating(t, cfg)
		}},
		{"client credentials", func(t *testing.T, ts *tokenServer) Source {
			cc, err := NewClientCredentials(ClientCredentialsConfig{
				TokenURL: ts.URL(), ClientID: ts.clientID, ClientSecret: ts.secretValue(),
				HTTPClient: ts.srv.Client(), Clock: newFakeClock().Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			return cc
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTokenServer(t)
			src := tc.source(t, ts)
			client := &http.Client{Transport: &Transport{Base: ts.srv.Client().Transport, Source: src}, Timeout: 10 * time.Second}
			get := func() int {
				resp, err := client.Get(ts.srv.URL + "/api")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if code := get(); code != http.StatusOK {
				t.Fatalf("first call %d", code)
			}
			before, _ := src.Token(t.Context())
			ts.revokeAccess() // the upstream drops the access token before its expiry
			if code := get(); code != http.StatusUnauthorized {
				t.Fatalf("call with a revoked token answered %d, want the 401 passed through", code)
			}
			if code := get(); code != http.StatusOK {
				t.Fatalf("retry after the 401 answered %d", code)
			}
			after, _ := src.Token(t.Context())
			if after.AccessToken == before.AccessToken {
				t.Fatal("no new token after a 401")
			}
		})
	}
}
