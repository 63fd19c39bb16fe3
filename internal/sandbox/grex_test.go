package sandbox

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

var grexT0 = time.Date(2025, 6, 2, 8, 0, 0, 0, time.UTC)

type grexHarness struct {
	g     *GREX
	srv   *httptest.Server
	clock *FakeClock
	http  *http.Client // does not follow redirects
}

func newGREXHarness(t *testing.T, opts GREXOptions) *grexHarness {
	t.Helper()
	clock := NewFakeClock(grexT0)
	opts.Clock = clock
	g := NewGREX(opts)
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return &grexHarness{g: g, srv: srv, clock: clock, http: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

const grexTestVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789"

func grexChallenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

func (h *grexHarness) authorizeQuery() url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {GREXDemoClientID},
		"redirect_uri":          {GREXDemoRedirectURI},
		"scope":                 {h.g.Scope()},
		"state":                 {"st-123"},
		"code_challenge":        {grexChallenge(grexTestVerifier)},
		"code_challenge_method": {"S256"},
	}
}

// authorize GETs the authorize endpoint and returns the redirect's query.
func (h *grexHarness) authorize(t *testing.T, q url.Values) (int, url.Values) {
	t.Helper()
	resp, err := h.http.Get(h.srv.URL + h.g.AuthorizePath() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return resp.StatusCode, nil
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != GREXDemoRedirectURI {
		t.Fatalf("redirected to %s, want %s", got, GREXDemoRedirectURI)
	}
	return resp.StatusCode, loc.Query()
}

type grexTokenAnswer struct {
	AccessToken           string `json:"access_token"`
	RefreshToken          string `json:"refresh_token"`
	ExpiresIn             int64  `json:"expires_in"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in"`
	Error                 string `json:"error"`
}

func (h *grexHarness) tokenPost(t *testing.T, form url.Values) (int, grexTokenAnswer) {
	t.Helper()
	resp, err := h.http.PostForm(h.srv.URL+h.g.TokenPath(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a grexTokenAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, a
}

func (h *grexHarness) exchange(t *testing.T, code, verifier string) (int, grexTokenAnswer) {
	t.Helper()
	return h.tokenPost(t, url.Values{
		"grant_type": {"authorization_code"}, "client_id": {GREXDemoClientID}, "code": {code},
		"redirect_uri": {GREXDemoRedirectURI}, "code_verifier": {verifier},
	})
}

func (h *grexHarness) refresh(t *testing.T, rt string) (int, grexTokenAnswer) {
	t.Helper()
	return h.tokenPost(t, url.Values{
		"grant_type": {"refresh_token"}, "client_id": {GREXDemoClientID}, "refresh_token": {rt},
		"scope": {h.g.Scope()}, "redirect_uri": {GREXDemoRedirectURI},
	})
}

// login runs the whole PKCE flow and returns the tokens.
func (h *grexHarness) login(t *testing.T) grexTokenAnswer {
	t.Helper()
	_, q := h.authorize(t, h.authorizeQuery())
	status, a := h.exchange(t, q.Get("code"), grexTestVerifier)
	if status != http.StatusOK || a.AccessToken == "" || a.RefreshToken == "" {
		t.Fatalf("login: %d %+v", status, a)
	}
	return a
}

// get sends a registry GET with the required headers; mod may change the request.
func (h *grexHarness) get(t *testing.T, token, path string, q url.Values, mod func(*http.Request)) (int, []byte) {
	t.Helper()
	u := h.srv.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gridstream-test")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if mod != nil {
		mod(req)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func bundlesPath(acct string) string {
	return strings.Replace(grexCertificatesPath, "{account}", acct, 1)
}

func transactionsPath(acct string) string {
	return strings.Replace(grexTransactionsPath, "{account}", acct, 1)
}

type testBundle struct {
	BundleID   string `json:"BundleId"`
	Status     string `json:"Status"`
	ModifiedAt string `json:"ModifiedAt"`
	Volume     int64  `json:"Volume"`
}

func decodeBundles(t *testing.T, body []byte) []testBundle {
	t.Helper()
	var page struct {
		Value []testBundle `json:"value"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return page.Value
}

func TestGREXAuthorizeRedirectsWithCodeAndState(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	status, q := h.authorize(t, h.authorizeQuery())
	if status != http.StatusFound || q.Get("code") == "" || q.Get("state") != "st-123" {
		t.Fatalf("got %d %v, want 302 with code and state", status, q)
	}
}

func TestGREXAuthorizeRejectsBadInput(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	cases := []struct {
		name      string
		set, del  string
		value     string
		wantPage  bool   // 400 page, no redirect
		wantError string // error in the redirect
	}{
		{name: "unknown client", set: "client_id", value: "other", wantPage: true},
		{name: "unregistered redirect", set: "redirect_uri", value: "https://evil.example/cb", wantPage: true},
		{name: "implicit flow", set: "response_type", value: "token", wantError: "unsupported_response_type"},
		{name: "hybrid id_token", set: "response_type", value: "id_token", wantError: "unsupported_response_type"},
		{name: "no challenge", del: "code_challenge", wantError: "invalid_request"},
		{name: "plain challenge", set: "code_challenge_method", value: "plain", wantError: "invalid_request"},
		{name: "no state", del: "state", wantError: "invalid_request"},
		{name: "no scope", del: "scope", wantError: "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := h.authorizeQuery()
			if tc.set != "" {
				q.Set(tc.set, tc.value)
			}
			if tc.del != "" {
				q.Del(tc.del)
			}
			status, rq := h.authorize(t, q)
			if tc.wantPage {
				if status != http.StatusBadRequest {
					t.Fatalf("status %d, want 400 page", status)
				}
				return
			}
			if status != http.StatusFound || rq.Get("error") != tc.wantError || rq.Get("code") != "" {
				t.Fatalf("got %d %v, want redirect with error %s", status, rq, tc.wantError)
			}
		})
	}
}

func TestGREXManualApprovalShowsFormThenRedirects(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{ManualApproval: true})
	status, _ := h.authorize(t, h.authorizeQuery())
	if status != http.StatusOK {
		t.Fatalf("status %d, want 200 form", status)
	}
	q := h.authorizeQuery()
	q.Set("auto_approve", "1")
	if status, rq := h.authorize(t, q); status != http.StatusFound || rq.Get("code") == "" {
		t.Fatalf("auto_approve: %d %v", status, rq)
	}
}

func TestGREXTokenChecksPKCEVerifier(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	_, q := h.authorize(t, h.authorizeQuery())
	status, a := h.exchange(t, q.Get("code"), strings.Repeat("x", 50))
	if status != http.StatusBadRequest || a.Error != "invalid_grant" || a.AccessToken != "" {
		t.Fatalf("wrong verifier: %d %+v", status, a)
	}
	if h.g.Counters.Get("pkce_rejected") != 1 {
		t.Fatalf("pkce_rejected = %d", h.g.Counters.Get("pkce_rejected"))
	}
	// The code died with the failed attempt; a fresh one with the right verifier works.
	_, q = h.authorize(t, h.authorizeQuery())
	status, a = h.exchange(t, q.Get("code"), grexTestVerifier)
	if status != http.StatusOK || a.AccessToken == "" || a.RefreshToken == "" ||
		a.ExpiresIn != 3600 || a.RefreshTokenExpiresIn != 86400 {
		t.Fatalf("right verifier: %d %+v", status, a)
	}
}

func TestGREXCodesAreSingleUseAndExpire(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	_, q := h.authorize(t, h.authorizeQuery())
	if status, _ := h.exchange(t, q.Get("code"), grexTestVerifier); status != http.StatusOK {
		t.Fatalf("first use: %d", status)
	}
	if status, a := h.exchange(t, q.Get("code"), grexTestVerifier); status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("second use: %d %+v", status, a)
	}
	_, q = h.authorize(t, h.authorizeQuery())
	h.clock.Advance(grexCodeTTL)
	if status, _ := h.exchange(t, q.Get("code"), grexTestVerifier); status != http.StatusBadRequest {
		t.Fatalf("expired code: %d", status)
	}
}

func TestGREXRefreshRotatesAndOldTokenDies(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	first := h.login(t)
	status, second := h.refresh(t, first.RefreshToken)
	if status != http.StatusOK || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh: %d %+v", status, second)
	}
	if status, a := h.refresh(t, first.RefreshToken); status != http.StatusBadRequest || a.Error != "invalid_grant" {
		t.Fatalf("old refresh token reused: %d %+v", status, a)
	}
	if status, _ := h.refresh(t, second.RefreshToken); status != http.StatusOK {
		t.Fatalf("new refresh token: %d", status)
	}
	if got := h.g.Counters.Get("refresh_rejected"); got != 1 {
		t.Fatalf("refresh_rejected = %d, want 1", got)
	}
}

func TestGREXRefreshTokenExpires(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{RefreshTTL: 2 * time.Hour, SessionTTL: 3 * time.Hour})
	a := h.login(t)
	h.clock.Advance(90 * time.Minute)
	status, b := h.refresh(t, a.RefreshToken)
	if status != http.StatusOK || b.RefreshTokenExpiresIn != int64(90*time.Minute/time.Second) {
		t.Fatalf("refresh within lifetime: %d %+v (session end caps the new token)", status, b)
	}
	h.clock.Advance(90 * time.Minute)
	if status, c := h.refresh(t, b.RefreshToken); status != http.StatusBadRequest || c.Error != "invalid_grant" {
		t.Fatalf("refresh after session end: %d %+v", status, c)
	}
}

func TestGREXRefusesPasswordAndOtherGrants(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	for _, gt := range []string{"password", "client_credentials", "implicit"} {
		status, a := h.tokenPost(t, url.Values{"grant_type": {gt}, "client_id": {GREXDemoClientID},
			"username": {"u"}, "password": {"p"}, "scope": {h.g.Scope()}})
		if status != http.StatusBadRequest || a.Error != "unsupported_grant_type" || a.AccessToken != "" {
			t.Fatalf("%s: %d %+v", gt, status, a)
		}
	}
}

func TestGREXRevokeHooks(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	a := h.login(t)
	if status, _ := h.get(t, a.AccessToken, bundlesPath("FR0001"), nil, nil); status != http.StatusOK {
		t.Fatalf("before revoke: %d", status)
	}
	h.g.RevokeAccess()
	if status, _ := h.get(t, a.AccessToken, bundlesPath("FR0001"), nil, nil); status != http.StatusUnauthorized {
		t.Fatalf("after RevokeAccess: %d, want 401", status)
	}
	h.g.RevokeRefresh()
	if status, _ := h.refresh(t, a.RefreshToken); status != http.StatusBadRequest {
		t.Fatalf("after RevokeRefresh: %d, want 400", status)
	}
}

func TestGREXRequiresValidBearer(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{AccessTTL: 10 * time.Minute})
	a := h.login(t)
	cases := []struct {
		name, token string
		advance     time.Duration
		want        int
	}{
		{name: "none", want: http.StatusUnauthorized},
		{name: "unknown", token: "grex-at-nope", want: http.StatusUnauthorized},
		{name: "valid", token: a.AccessToken, want: http.StatusOK},
		{name: "expired", token: a.AccessToken, advance: 10 * time.Minute, want: http.StatusUnauthorized},
	}
	for _, tc := range cases { // sequential: the clock moves
		h.clock.Advance(tc.advance)
		if status, _ := h.get(t, tc.token, bundlesPath("FR0001"), nil, nil); status != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, status, tc.want)
		}
	}
}

func TestGREXFairUseCountsExactlyAtLimits(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{MaxViolations: 100, EventEvery: -1, AccessTTL: 48 * time.Hour})
	tok := h.login(t).AccessToken
	q := url.Values{"$top": {"1"}}
	call := func() int {
		status, _ := h.get(t, tok, bundlesPath("FR0001"), q, nil)
		return status
	}
	// Per minute: 100 pass, the 101st is refused; a minute later (sliding) the first ones age out.
	for i := range 100 {
		if s := call(); s != http.StatusOK {
			t.Fatalf("request %d in the minute: %d", i+1, s)
		}
	}
	if s := call(); s != http.StatusTooManyRequests {
		t.Fatalf("request 101 in the minute: %d, want 429", s)
	}
	h.clock.Advance(59 * time.Second)
	if s := call(); s != http.StatusTooManyRequests {
		t.Fatalf("59 s later: %d, want 429 (sliding window)", s)
	}
	h.clock.Advance(time.Second)
	// Per hour: 400 more across the next minutes pass, then the hour is full.
	for i := range 400 {
		if i%100 == 0 && i > 0 {
			h.clock.Advance(time.Minute)
		}
		if s := call(); s != http.StatusOK {
			t.Fatalf("request %d in the hour: %d", 101+i, s)
		}
	}
	h.clock.Advance(time.Minute)
	if s := call(); s != http.StatusTooManyRequests {
		t.Fatalf("request 501 in the hour: %d, want 429", s)
	}
	if got := h.g.Counters.Get("rate_limited.certificates"); got != 3 {
		t.Fatalf("rate_limited = %d, want 3", got)
	}
	if got := h.g.Violations(); got != 3 {
		t.Fatalf("violations = %d, want 3", got)
	}
	// An hour after the first burst, the first 100 have aged out.
	h.clock.Set(grexT0.Add(time.Hour + time.Second))
	if s := call(); s != http.StatusOK {
		t.Fatalf("an hour later: %d", s)
	}
}

func TestGREXBlocksAfterRepeatedViolations(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{PerMinute: 2, BlockFor: 30 * time.Minute})
	tok := h.login(t).AccessToken
	statuses := []int{}
	for range 6 {
		s, _ := h.get(t, tok, bundlesPath("FR0001"), nil, nil)
		statuses = append(statuses, s)
	}
	want := []int{200, 200, 429, 429, 429, 403}
	if !reflect.DeepEqual(statuses, want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	h.clock.Advance(29 * time.Minute)
	if s, _ := h.get(t, tok, bundlesPath("FR0001"), nil, nil); s != http.StatusForbidden {
		t.Fatalf("still blocked: %d", s)
	}
	h.clock.Advance(time.Minute)
	if s, _ := h.get(t, tok, bundlesPath("FR0001"), nil, nil); s != http.StatusOK {
		t.Fatalf("block over: %d", s)
	}
	if h.g.Counters.Get("blocks") != 1 {
		t.Fatalf("blocks = %d", h.g.Counters.Get("blocks"))
	}
}

func TestGREXMissingHeaderIsForbidden(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{MaxViolations: 100})
	tok := h.login(t).AccessToken
	for _, hdr := range []string{"Accept", "Content-Type", "User-Agent"} {
		t.Run(hdr, func(t *testing.T) {
			s, _ := h.get(t, tok, bundlesPath("FR0001"), nil, func(r *http.Request) {
				r.Header.Del(hdr)
				if hdr == "User-Agent" {
					r.Header["User-Agent"] = []string{""} // Go sends none
				}
			})
			if s != http.StatusForbidden {
				t.Fatalf("without %s: %d, want 403", hdr, s)
			}
		})
	}
	if got := h.g.Violations(); got != 3 {
		t.Fatalf("violations = %d, want 3", got)
	}
}

func TestGREXFirewallRefusesSlashOrURLInQuery(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{MaxViolations: 100})
	tok := h.login(t).AccessToken
	cases := []struct {
		name  string
		q     url.Values
		want  int
		count bool
	}{
		{name: "slash", q: url.Values{"$filter": {"ModifiedAt ge 2025/01/01"}}, want: 403},
		{name: "url", q: url.Values{"x": {"https:example"}}, want: 200},
		{name: "full url", q: url.Values{"x": {"HTTPS://example.com"}}, want: 403},
		{name: "rfc3339 is fine", q: url.Values{"$filter": {"ModifiedAt ge 2025-01-01T00:00:00Z"}}, want: 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if s, _ := h.get(t, tok, bundlesPath("FR0001"), tc.q, nil); s != tc.want {
				t.Fatalf("%v: %d, want %d", tc.q, s, tc.want)
			}
		})
	}
}

func TestGREXWriteMethodsAreCountedAndRefused(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{MaxViolations: 100})
	tok := h.login(t).AccessToken
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		req, _ := http.NewRequest(m, h.srv.URL+bundlesPath("FR0001"), strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var env grexEnvelope
		err = json.NewDecoder(resp.Body).Decode(&env)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 400 || env.StatusCode != 400 || env.ResponseCode == "" {
			t.Fatalf("%s: %d %+v %v", m, resp.StatusCode, env, err)
		}
	}
	if got := h.g.Counters.Get("write_attempts"); got != 4 {
		t.Fatalf("write_attempts = %d, want 4", got)
	}
	if got := h.g.Violations(); got != 4 {
		t.Fatalf("violations = %d, want 4", got)
	}
}

func TestGREXListQueryValidation(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	tok := h.login(t).AccessToken
	cases := []struct {
		name string
		q    url.Values
		want int
	}{
		{name: "top too big", q: url.Values{"$top": {"101"}}, want: 400},
		{name: "top zero", q: url.Values{"$top": {"0"}}, want: 400},
		{name: "negative skip", q: url.Values{"$skip": {"-1"}}, want: 400},
		{name: "other filter", q: url.Values{"$filter": {"Status eq 'Active'"}}, want: 400},
		{name: "other order", q: url.Values{"$orderby": {"Volume desc"}}, want: 400},
		{name: "good", q: url.Values{"$top": {"100"}, "$skip": {"5"}, "$orderby": {"ModifiedAt asc,BundleId asc"},
			"$filter": {"ModifiedAt ge 2025-01-01T00:00:00Z and ModifiedAt lt 2025-06-01T00:00:00Z"}}, want: 200},
		{name: "unknown account", want: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acct := "FR0001"
			if tc.want == 404 {
				acct = "FR7777"
			}
			if s, body := h.get(t, tok, bundlesPath(acct), tc.q, nil); s != tc.want {
				t.Fatalf("%d %s, want %d", s, body, tc.want)
			}
		})
	}
}

// readAll pages through a list with $top and $skip.
func (h *grexHarness) readAll(t *testing.T, tok, path, filter string, top int) []testBundle {
	t.Helper()
	var all []testBundle
	order := "ModifiedAt asc,BundleId asc"
	if strings.HasSuffix(path, "/Transactions") {
		order = "ModifiedAt asc,TransactionId asc"
	}
	for skip := 0; ; skip += top {
		q := url.Values{"$top": {fmt.Sprint(top)}, "$skip": {fmt.Sprint(skip)}, "$orderby": {order}}
		if filter != "" {
			q.Set("$filter", filter)
		}
		s, body := h.get(t, tok, path, q, nil)
		if s != http.StatusOK {
			t.Fatalf("page at %d: %d %s", skip, s, body)
		}
		page := decodeBundles(t, body)
		all = append(all, page...)
		if len(page) < top {
			return all
		}
	}
}

func TestGREXPagingIsStable(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{Bundles: 250, EventEvery: -1})
	tok := h.login(t).AccessToken
	small := h.readAll(t, tok, bundlesPath("FR0001"), "", 7)
	big := h.readAll(t, tok, bundlesPath("FR0001"), "", 100)
	if len(small) != 250 || !reflect.DeepEqual(small, big) {
		t.Fatalf("paging with 7 gave %d, with 100 gave %d, or a different order", len(small), len(big))
	}
	seen := map[string]bool{}
	ties := 0
	for i, b := range small {
		if seen[b.BundleID] {
			t.Fatalf("bundle %s twice", b.BundleID)
		}
		seen[b.BundleID] = true
		if i > 0 {
			prev := small[i-1]
			if b.ModifiedAt < prev.ModifiedAt || (b.ModifiedAt == prev.ModifiedAt && b.BundleID < prev.BundleID) {
				t.Fatalf("order broken at %d: %v after %v", i, b, prev)
			}
			if b.ModifiedAt == prev.ModifiedAt {
				ties++
			}
		}
	}
	if ties == 0 {
		t.Fatal("no two bundles share a ModifiedAt: batches should, so keyset paging is exercised")
	}
}

func TestGREXDataAreDeterministicFromSeed(t *testing.T) {
	t.Parallel()
	read := func(seed uint64) []testBundle {
		h := newGREXHarness(t, GREXOptions{Seed: seed, Bundles: 30, AccessTTL: 48 * time.Hour})
		tok := h.login(t).AccessToken
		h.clock.Advance(6 * time.Hour)
		return h.readAll(t, tok, bundlesPath("FR0002"), "", 100)
	}
	a, b, c := read(7), read(7), read(8)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different data")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same data")
	}
}

func TestGREXBundlesChangeOverSimulatedTime(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{Bundles: 40, EventEvery: 10 * time.Minute, AccessTTL: 48 * time.Hour})
	tok := h.login(t).AccessToken
	before := map[string]testBundle{}
	for _, b := range h.readAll(t, tok, bundlesPath("FR0001"), "", 100) {
		before[b.BundleID] = b
	}
	h.clock.Advance(24 * time.Hour)
	filter := "ModifiedAt ge " + grexT0.Format(time.RFC3339)
	changed := h.readAll(t, tok, bundlesPath("FR0001"), filter, 100)
	if len(changed) < 100 {
		t.Fatalf("%d bundles changed in a simulated day of 144 events, want at least 100", len(changed))
	}
	issued, revised := 0, 0
	statuses := map[string]bool{}
	for _, b := range changed {
		if b.ModifiedAt < grexT0.Format(time.RFC3339) {
			t.Fatalf("filter returned %v modified before %s", b, grexT0)
		}
		statuses[b.Status] = true
		if old, ok := before[b.BundleID]; ok {
			revised++
			if old.ModifiedAt >= b.ModifiedAt {
				t.Fatalf("revision of %s did not move ModifiedAt: %v → %v", b.BundleID, old, b)
			}
		} else {
			issued++
		}
	}
	if issued == 0 || revised == 0 {
		t.Fatalf("issued %d, revised %d: want both", issued, revised)
	}
	for _, s := range []string{GREXStatusActive, GREXStatusTransferred, GREXStatusCancelled} {
		if !statuses[s] {
			t.Errorf("no %s bundle among changes: %v", s, statuses)
		}
	}
	// Every change is also a transaction.
	txs := h.readAll(t, tok, transactionsPath("FR0001"), filter, 100)
	if len(txs) < len(changed) {
		t.Fatalf("%d transactions for %d changed bundles", len(txs), len(changed))
	}
}

func TestGREXFaultInjectionPerEndpoint(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	tok := h.login(t).AccessToken
	h.g.Faults.Set(GREXEndpointCertificates, Fault{Status: 503, Count: 1})
	if s, _ := h.get(t, tok, bundlesPath("FR0001"), nil, nil); s != 503 {
		t.Fatalf("with fault: %d", s)
	}
	if s, _ := h.get(t, tok, transactionsPath("FR0001"), nil, nil); s != 200 {
		t.Fatalf("other endpoint: %d", s)
	}
	if s, _ := h.get(t, tok, bundlesPath("FR0001"), nil, nil); s != 200 {
		t.Fatalf("after fault: %d", s)
	}
	if h.g.Counters.Get("faults.certificates") != 1 {
		t.Fatal("fault not counted")
	}
}

func TestGREXAccountSummary(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{})
	tok := h.login(t).AccessToken
	s, body := h.get(t, tok, strings.Replace(grexAccountPath, "{account}", "FR0002", 1), nil, nil)
	var sum grexAccountSummary
	if err := json.Unmarshal(body, &sum); s != 200 || err != nil || sum.AccountNumber != "FR0002" || sum.BundleCount != GREXDemoBundles {
		t.Fatalf("%d %s %v", s, body, err)
	}
}

func TestGREXApproveStandsInForThePerson(t *testing.T) {
	t.Parallel()
	h := newGREXHarness(t, GREXOptions{ManualApproval: true})
	loc, err := h.g.Approve("https://gcrfdemo.b2clogin.com" + h.g.AuthorizePath() + "?" + h.authorizeQuery().Encode())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(loc)
	if status, a := h.exchange(t, u.Query().Get("code"), grexTestVerifier); status != http.StatusOK || a.RefreshToken == "" {
		t.Fatalf("exchange of the approved code: %d %+v", status, a)
	}
	if _, err := h.g.Approve("https://example.com/other"); err == nil {
		t.Fatal("approved a foreign URL")
	}
}
