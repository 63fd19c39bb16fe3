package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// grexCode is an issued, not yet redeemed authorization code.
type grexCode struct {
	clientID, redirectURI, challenge, scope, subject string
	expires                                          time.Time
}

// grexToken is an issued access or refresh token.
type grexToken struct {
	clientID, subject, scope string
	expires                  time.Time
	sessionEnd               time.Time // zero: unbounded
}

func grexRandom(prefix string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// grexApproveForm is the sandbox's login page: no password, no second factor, one button.
var grexApproveForm = template.Must(template.New("approve").Parse(`<!DOCTYPE html>
<html><head><title>G-REX sandbox sign-in</title></head><body>
<h1>G-REX sandbox sign-in</h1>
<p>This sandbox needs no password or second factor.</p>
<form method="get" action="">
{{range $k, $v := .}}<input type="hidden" name="{{$k}}" value="{{index $v 0}}">
{{end}}<input type="hidden" name="auto_approve" value="1">
<button type="submit">Sign in as demo operator</button>
</form></body></html>`))

// authorize serves the B2C authorize endpoint.
func (g *GREX) authorize(w http.ResponseWriter, r *http.Request) {
	g.Counters.Inc("requests." + GREXEndpointAuthorize)
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	// Without a known client and its registered redirect, B2C shows an error page and
	// redirects nowhere.
	if q.Get("client_id") != g.opts.ClientID {
		g.Counters.Inc("authorize_rejected")
		http.Error(w, "AADB2C90117: unknown client_id", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	if redirect != g.opts.RedirectURI {
		g.Counters.Inc("authorize_rejected")
		http.Error(w, "AADB2C90006: redirect_uri is not registered for this client", http.StatusBadRequest)
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		g.Counters.Inc("authorize_rejected")
		u, _ := url.Parse(redirect)
		v := url.Values{"error": {code}, "error_description": {desc}}
		if state != "" {
			v.Set("state", state)
		}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "AADB2C90079: only the authorization code flow is allowed")
		return
	case q.Get("scope") == "":
		fail("invalid_request", "AADB2C90055: scope is required")
		return
	case state == "":
		fail("invalid_request", "state is required")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "AADB2C90183: code_challenge is required")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "AADB2C90184: code_challenge_method must be S256")
		return
	}
	if g.opts.ManualApproval && q.Get("auto_approve") != "1" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = grexApproveForm.Execute(w, q)
		return
	}
	subject := q.Get("login_hint")
	if subject == "" {
		subject = GREXDemoSubject
	}
	code := grexRandom("grex-code-")
	g.mu.Lock()
	g.codes[code] = &grexCode{
		clientID: g.opts.ClientID, redirectURI: redirect, challenge: q.Get("code_challenge"),
		scope: q.Get("scope"), subject: subject, expires: g.clock.Now().Add(grexCodeTTL),
	}
	g.mu.Unlock()
	g.Counters.Inc("codes_issued")
	u, _ := url.Parse(redirect)
	uq := u.Query()
	uq.Set("code", code)
	uq.Set("state", state)
	u.RawQuery = uq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token serves the B2C token endpoint.
func (g *GREX) token(w http.ResponseWriter, r *http.Request) {
	g.Counters.Inc("requests." + GREXEndpointToken)
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		g.tokenError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	f := r.PostForm
	if f.Get("client_id") != g.opts.ClientID {
		g.tokenError(w, http.StatusBadRequest, "invalid_client", "AADB2C90117: unknown client_id")
		return
	}
	now := g.clock.Now()
	switch f.Get("grant_type") {
	case "authorization_code":
		g.mu.Lock()
		c, ok := g.codes[f.Get("code")]
		delete(g.codes, f.Get("code")) // single use, whatever the outcome
		g.mu.Unlock()
		switch {
		case !ok:
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90080: the authorization code is unknown, used or expired")
		case !now.Before(c.expires):
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90080: the authorization code has expired")
		case f.Get("redirect_uri") != c.redirectURI:
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90006: redirect_uri does not match the authorize request")
		case !grexVerifierMatches(f.Get("code_verifier"), c.challenge):
			g.Counters.Inc("pkce_rejected")
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90181: the code_verifier does not match the code_challenge")
		default:
			var end time.Time
			if g.opts.SessionTTL > 0 {
				end = now.Add(g.opts.SessionTTL)
			}
			g.issue(w, now, c.clientID, c.subject, c.scope, end)
		}
	case "refresh_token":
		rt := f.Get("refresh_token")
		g.mu.Lock()
		old, ok := g.refresh[rt]
		delete(g.refresh, rt) // rotation: a refresh token is spent once
		g.mu.Unlock()
		switch {
		case !ok:
			g.Counters.Inc("refresh_rejected")
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90129: the refresh token is unknown, revoked or already used")
		case !now.Before(old.expires) || (!old.sessionEnd.IsZero() && !now.Before(old.sessionEnd)):
			g.Counters.Inc("refresh_rejected")
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90080: the refresh token has expired")
		case old.clientID != f.Get("client_id"):
			g.Counters.Inc("refresh_rejected")
			g.tokenError(w, http.StatusBadRequest, "invalid_grant", "AADB2C90088: the refresh token was issued to another client")
		default:
			g.Counters.Inc("refreshes")
			g.issue(w, now, old.clientID, old.subject, old.scope, old.sessionEnd)
		}
	case "password":
		g.Counters.Inc("forbidden_grants")
		g.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "AADB2C90086: resource owner password credentials are not allowed")
	default:
		g.Counters.Inc("forbidden_grants")
		g.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "AADB2C90086: the grant type is not supported")
	}
}

// issue answers a new access token and, when offline_access was granted, a new refresh token.
func (g *GREX) issue(w http.ResponseWriter, now time.Time, clientID, subject, scope string, sessionEnd time.Time) {
	at := grexRandom("grex-at-")
	g.mu.Lock()
	g.access[at] = &grexToken{clientID: clientID, subject: subject, scope: scope, expires: now.Add(g.opts.AccessTTL)}
	ans := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   int64(g.opts.AccessTTL / time.Second),
		"not_before":   now.Unix(),
		"expires_on":   now.Add(g.opts.AccessTTL).Unix(),
		"scope":        scope,
	}
	if strings.Contains(" "+scope+" ", " offline_access ") {
		rtExp := now.Add(g.opts.RefreshTTL)
		if !sessionEnd.IsZero() && sessionEnd.Before(rtExp) {
			rtExp = sessionEnd
		}
		rt := grexRandom("grex-rt-")
		g.refresh[rt] = &grexToken{clientID: clientID, subject: subject, scope: scope, expires: rtExp, sessionEnd: sessionEnd}
		ans["refresh_token"] = rt
		ans["refresh_token_expires_in"] = int64(rtExp.Sub(now) / time.Second)
	}
	g.mu.Unlock()
	g.Counters.Inc("tokens_issued")
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, ans)
}

func (g *GREX) tokenError(w http.ResponseWriter, status int, code, desc string) {
	g.Counters.Inc("token_errors")
	WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// grexVerifierMatches checks an RFC 7636 S256 verifier against its challenge.
func grexVerifierMatches(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}
