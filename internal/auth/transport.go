package auth

import (
	"fmt"
	"net/http"
)

// SchemeNone makes Transport send the bare access token in Authorization, without a scheme,
// for an upstream that wants it that way (the INGRID guide shows the raw token).
const SchemeNone = "none"

// Transport is an http.RoundTripper that authorizes each request with a token from Source.
//
// On a 401 answer it calls Source.Invalidate and returns the 401 unchanged: the retry layer
// above it retries once, and that retry gets a fresh token.
type Transport struct {
	Base   http.RoundTripper // the next layer; http.DefaultTransport when nil
	Source Source
	Scheme string // "Bearer" when empty; SchemeNone for the bare token
}

// RoundTrip sets Authorization on a clone of req and sends it.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.Source.Token(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("auth: token for %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	out := req.Clone(req.Context())
	switch t.Scheme {
	case "":
		out.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	case SchemeNone:
		out.Header.Set("Authorization", tok.AccessToken)
	default:
		out.Header.Set("Authorization", t.Scheme+" "+tok.AccessToken)
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(out)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		t.Source.Invalidate()
	}
	return resp, err
}
