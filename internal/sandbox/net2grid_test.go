package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

var n2gT0 = time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)

type n2gHarness struct {
	fake  *NET2GRID
	srv   *httptest.Server
	clock *FakeClock
}

func newN2GHarness(t *testing.T, opts NET2GRIDOptions) *n2gHarness {
	t.Helper()
	clock := NewFakeClock(n2gT0)
	opts.Clock = clock
	f := NewNET2GRID(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &n2gHarness{fake: f, srv: srv, clock: clock}
}

// post sends a token request and returns the status and decoded answer.
func (h *n2gHarness) post(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(h.srv.URL+"/v2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("token answer: %v", err)
	}
	return resp.StatusCode, m
}

func (h *n2gHarness) login(t *testing.T, email string) (access, refresh string) {
	t.Helper()
	code, m := h.post(t, url.Values{
		"grant_type": {"password"}, "client_id": {NET2GRIDDemoClientID}, "client_secret": {NET2GRIDDemoClientSecret},
		"username": {email}, "password": {NET2GRIDDemoPassword},
	})
	if code != http.StatusOK {
		t.Fatalf("login %s: %d %v", email, code, m)
	}
	return m["access_token"].(string), m["refresh_token"].(string)
}

func (h *n2gHarness) refresh(t *testing.T, rt string) (int, map[string]any) {
	t.Helper()
	return h.post(t, url.Values{
		"grant_type": {"refresh_token"}, "client_id": {NET2GRIDDemoClientID},
		"client_secret": {NET2GRIDDemoClientSecret}, "refresh_token": {rt},
	})
}

// get sends an authorized GET and returns the status and body.
func (h *n2gHarness) get(t *testing.T, access, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.srv.URL+path, nil)
	if access != "" {
		req.Header.Set("Authorization", "Bearer "+access)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (h *n2gHarness) readings(t *testing.T, access, path string) n2gMeasurements {
	t.Helper()
	code, b := h.get(t, access, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	var env struct {
		Status string          `json:"status"`
		Data   n2gMeasurements `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil || env.Status != "ok" {
		t.Fatalf("GET %s: %v %s", path, err, b)
	}
	return env.Data
}

func TestNET2GRIDPasswordGrant(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	good := url.Values{
		"grant_type": {"password"}, "client_id": {NET2GRIDDemoClientID}, "client_secret": {NET2GRIDDemoClientSecret},
		"username": {NET2GRIDDemoUser(1)}, "password": {NET2GRIDDemoPassword},
	}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	cases := []struct {
		name  string
		form  url.Values
		code  int
		error string
	}{
		{"good credentials", good, 200, ""},
		{"upper-case e-mail", with("username", strings.ToUpper(NET2GRIDDemoUser(1))), 200, ""},
		{"wrong password", with("password", "nope"), 400, "invalid_grant"},
		{"unknown user", with("username", "nobody@example.test"), 400, "invalid_grant"},
		{"wrong client secret", with("client_secret", "nope"), 401, "invalid_client"},
		{"unknown client", with("client_id", "nope"), 401, "invalid_client"},
		{"unsupported grant", with("grant_type", "client_credentials"), 400, "unsupported_grant_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, m := h.post(t, tc.form)
			if code != tc.code {
				t.Fatalf("status %d, want %d (%v)", code, tc.code, m)
			}
			if tc.error != "" {
				if m["error"] != tc.error {
					t.Fatalf("error %v, want %s", m["error"], tc.error)
				}
				return
			}
			for _, k := range []string{"access_token", "refresh_token", "id_token"} {
				if s, _ := m[k].(string); s == "" {
					t.Errorf("%s missing", k)
				}
			}
			if m["expires_in"] != float64(3600) || m["token_type"] != "Bearer" {
				t.Errorf("expires_in %v token_type %v", m["expires_in"], m["token_type"])
			}
			if s, ok := m["scope"].([]any); !ok || len(s) != 0 {
				t.Errorf("scope %#v, want []", m["scope"])
			}
		})
	}
	resp, err := http.Get(h.srv.URL + "/v2/token")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v2/token: %d, want 405", resp.StatusCode)
	}
}

func TestNET2GRIDRefreshRotationInvalidatesOldToken(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	_, rt1 := h.login(t, NET2GRIDDemoUser(1))
	code, m := h.refresh(t, rt1)
	if code != 200 {
		t.Fatalf("refresh: %d %v", code, m)
	}
	rt2 := m["refresh_token"].(string)
	if rt2 == "" || rt2 == rt1 {
		t.Fatalf("refresh did not rotate")
	}
	if code, m := h.refresh(t, rt1); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("reuse of the rotated token: %d %v, want 400 invalid_grant", code, m)
	}
	if got := h.fake.Counters.Get("refresh_reused"); got != 1 {
		t.Fatalf("refresh_reused = %d, want 1", got)
	}
	if code, m := h.refresh(t, rt2); code != 200 {
		t.Fatalf("the new refresh token: %d %v", code, m)
	}
	if got := h.fake.Counters.Get("tokens_issued"); got != 3 {
		t.Fatalf("tokens_issued = %d, want 3", got)
	}
}

func TestNET2GRIDRefreshTokenExpires(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1, RefreshTTL: 24 * time.Hour})
	_, rt := h.login(t, NET2GRIDDemoUser(1))
	h.clock.Advance(24 * time.Hour)
	if code, m := h.refresh(t, rt); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("expired refresh token: %d %v", code, m)
	}
	if h.fake.Counters.Get("refresh_rejected") != 1 {
		t.Fatal("refresh_rejected not counted")
	}
}

func TestNET2GRIDRevocationHooks(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	at1, rt1 := h.login(t, NET2GRIDDemoUser(1))
	at2, rt2 := h.login(t, NET2GRIDDemoUser(2))

	h.fake.RevokeAccess(NET2GRIDDemoUser(1))
	if code, _ := h.get(t, at1, "/v2/primary-installation"); code != 401 {
		t.Fatalf("revoked access token: %d, want 401", code)
	}
	if code, _ := h.get(t, at2, "/v2/primary-installation"); code != 200 {
		t.Fatalf("other user's access token: %d, want 200", code)
	}
	h.fake.RevokeRefresh(NET2GRIDDemoUser(1))
	if code, m := h.refresh(t, rt1); code != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("revoked refresh token: %d %v", code, m)
	}
	if code, _ := h.refresh(t, rt2); code != 200 {
		t.Fatalf("other user's refresh: %d", code)
	}
	// A new password login works again after a revocation.
	h.login(t, NET2GRIDDemoUser(1))
}

func TestNET2GRIDChallengeAnswersNoTokens(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	h.fake.SetChallenge(NET2GRIDDemoUser(1), "SOFTWARE_TOKEN_MFA")
	code, m := h.post(t, url.Values{
		"grant_type": {"password"}, "client_id": {NET2GRIDDemoClientID}, "client_secret": {NET2GRIDDemoClientSecret},
		"username": {NET2GRIDDemoUser(1)}, "password": {NET2GRIDDemoPassword},
	})
	if code != 200 || m["challenge_name"] != "SOFTWARE_TOKEN_MFA" || m["access_token"] != nil {
		t.Fatalf("challenge answer: %d %v", code, m)
	}
}

func TestNET2GRIDAccessTokenExpires(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	at, _ := h.login(t, NET2GRIDDemoUser(1))
	if code, _ := h.get(t, at, "/v2/installations"); code != 200 {
		t.Fatalf("fresh token: %d", code)
	}
	h.clock.Advance(time.Hour)
	if code, _ := h.get(t, at, "/v2/installations"); code != 401 {
		t.Fatalf("expired token: %d, want 401", code)
	}
}

func TestNET2GRIDInstallations(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1, DemoUsers: 40})
	multi := 0
	for i := 1; i <= 40; i++ {
		email := NET2GRIDDemoUser(i)
		ids := h.fake.Installations(email)
		if len(ids) > 1 {
			multi++
		}
		at, _ := h.login(t, email)
		_, b := h.get(t, at, "/v2/primary-installation")
		var p struct {
			Status string          `json:"status"`
			Data   n2gInstallation `json:"data"`
		}
		if err := json.Unmarshal(b, &p); err != nil || p.Status != "ok" || p.Data.ID != ids[0] || !p.Data.Primary {
			t.Fatalf("primary of %s: %v %s", email, err, b)
		}
		_, b = h.get(t, at, "/v2/installations")
		var l struct {
			Data struct {
				Installations []n2gInstallation `json:"installations"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &l); err != nil || len(l.Data.Installations) != len(ids) {
			t.Fatalf("installations of %s: %v %s", email, err, b)
		}
	}
	if multi == 0 {
		t.Error("no user with two installations among 40")
	}
}

func TestNET2GRIDReadingsAreDeterministicAndAdditive(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 7, DemoUsers: 40})
	h2 := newN2GHarness(t, NET2GRIDOptions{Seed: 7, DemoUsers: 40})
	h3 := newN2GHarness(t, NET2GRIDOptions{Seed: 8, DemoUsers: 40})
	email, _ := findUser(t, h.fake, 40, false)
	at, _ := h.login(t, email)
	day := "/v2/energy-measurements/electricity-offtake/real-time/%s/2025-03-09/2025-03-09"
	q := h.readings(t, at, fmt.Sprintf(day, "quarters"))
	if len(q.Results) != 96 || q.Unit != "Wh" {
		t.Fatalf("quarters of a day: %d results, unit %s", len(q.Results), q.Unit)
	}
	hrs := h.readings(t, at, fmt.Sprintf(day, "hours"))
	days := h.readings(t, at, fmt.Sprintf(day, "days"))
	if len(hrs.Results) != 24 || len(days.Results) != 1 {
		t.Fatalf("hours %d days %d", len(hrs.Results), len(days.Results))
	}
	var sumQ, sumH int64
	for i, r := range q.Results {
		sumQ += r.Value
		if i%4 == 3 {
			if hv := hrs.Results[i/4].Value; hv != q.Results[i].Value+q.Results[i-1].Value+q.Results[i-2].Value+q.Results[i-3].Value {
				t.Fatalf("hour %d = %d is not the sum of its quarters", i/4, hv)
			}
		}
	}
	for _, r := range hrs.Results {
		sumH += r.Value
	}
	if sumQ != sumH || sumQ != days.Results[0].Value {
		t.Fatalf("sums differ: quarters %d hours %d day %d", sumQ, sumH, days.Results[0].Value)
	}
	at2, _ := h2.login(t, email)
	if again := h2.readings(t, at2, fmt.Sprintf(day, "quarters")); fmt.Sprint(again) != fmt.Sprint(q) {
		t.Fatal("same seed, different readings")
	}
	at3, _ := h3.login(t, email)
	if other := h3.readings(t, at3, fmt.Sprintf(day, "quarters")); fmt.Sprint(other.Results) == fmt.Sprint(q.Results) {
		t.Fatal("other seed, same readings")
	}
	// Datetime bounds are half-open and the future has no data.
	part := h.readings(t, at, "/v2/energy-measurements/electricity-offtake/real-time/quarters/2025-03-10T11:00:00/2025-03-10T13:00:00")
	if len(part.Results) != 4 || part.Results[3].Timestamp != "2025-03-10T11:45:00Z" {
		t.Fatalf("11:00 to 13:00 at 12:00: %v", part.Results)
	}
}

// findUser returns the first demo user whose primary installation matches batch.
func findUser(t *testing.T, f *NET2GRID, n int, batch bool) (string, string) {
	t.Helper()
	for i := 1; i <= n; i++ {
		email := NET2GRIDDemoUser(i)
		id := f.Installations(email)[0]
		if f.BatchFed(email, id) == batch {
			return email, id
		}
	}
	t.Fatalf("no demo user with batch=%v among %d", batch, n)
	return "", ""
}

func TestNET2GRIDBatchFedDataArrivesLate(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 3, DemoUsers: 40})
	email, id := findUser(t, h.fake, 40, true)
	at, _ := h.login(t, email)
	path := "/v2/energy-measurements/electricity-offtake/real-time/quarters/2025-03-10T09:00:00/2025-03-10T12:00:00?installation_id=" + id
	// At 12:00 the batch covering 06:00-12:00 is delivered at 14:00.
	if got := h.readings(t, at, path); len(got.Results) != 0 {
		t.Fatalf("batch data before delivery: %d results", len(got.Results))
	}
	if d := h.fake.DeliveredAt(true, time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC)); !d.Equal(time.Date(2025, 3, 10, 14, 0, 0, 0, time.UTC)) {
		t.Fatalf("delivered at %v", d)
	}
	h.clock.Set(time.Date(2025, 3, 10, 14, 0, 0, 0, time.UTC))
	at, _ = h.login(t, email)
	if got := h.readings(t, at, path); len(got.Results) != 12 {
		t.Fatalf("batch data after delivery: %d results, want 12", len(got.Results))
	}
}

func TestNET2GRIDRevisionsOverSimulatedTime(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 5, DemoUsers: 40})
	email, id := findUser(t, h.fake, 40, false)
	metric := "electricity-offtake"
	// Find a revised quarter in the previous day.
	var q, at time.Time
	for c := n2gT0.Add(-24 * time.Hour); c.Before(n2gT0); c = c.Add(n2gQuarter) {
		if r, ok := h.fake.RevisedAt(email, id, metric, c); ok {
			q, at = c, r
			break
		}
	}
	if q.IsZero() {
		t.Fatal("no revised quarter in a day")
	}
	path := fmt.Sprintf("/v2/energy-measurements/%s/real-time/quarters/%s/%s?installation_id=%s", metric,
		q.Format("2006-01-02T15:04:05"), q.Add(n2gQuarter).Format("2006-01-02T15:04:05"), id)
	h.clock.Set(q.Add(n2gQuarter))
	tok, _ := h.login(t, email)
	before := h.readings(t, tok, path).Results
	h.clock.Set(at.Add(-time.Second))
	tok, _ = h.login(t, email)
	still := h.readings(t, tok, path).Results
	h.clock.Set(at)
	tok, _ = h.login(t, email)
	after := h.readings(t, tok, path).Results
	if len(before) != 1 || len(after) != 1 || before[0].Value != still[0].Value || before[0].Value == after[0].Value {
		t.Fatalf("revision at %v: before %v, just before %v, after %v", at, before, still, after)
	}
}

func TestNET2GRIDMaxValuesMovesStartSilently(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1, MaxValues: 10})
	at, _ := h.login(t, NET2GRIDDemoUser(1))
	got := h.readings(t, at, "/v2/energy-measurements/electricity-offtake/real-time/quarters/2025-03-09T00:00:00/2025-03-09T06:00:00")
	if len(got.Results) != 10 || got.Results[0].Timestamp != "2025-03-09T03:30:00Z" {
		t.Fatalf("got %d results from %v", len(got.Results), got.Results)
	}
	if h.fake.Counters.Get("values_truncated") != 1 {
		t.Fatal("values_truncated not counted")
	}
}

func TestNET2GRIDRejectsBadRequests(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	at, _ := h.login(t, NET2GRIDDemoUser(1))
	base := "/v2/energy-measurements/"
	cases := []struct {
		name, token, path string
		code              int
	}{
		{"no token", "", "/v2/installations", 401},
		{"unknown token", "at.nope", "/v2/primary-installation", 401},
		{"unknown metric", at, base + "water/real-time/days/2025-03-01/2025-03-02", 400},
		{"unknown feed", at, base + "gas/billing/days/2025-03-01/2025-03-02", 400},
		{"unknown interval", at, base + "gas/real-time/minutes/2025-03-01/2025-03-02", 400},
		{"bad start", at, base + "gas/real-time/days/yesterday/2025-03-02", 400},
		{"start after end", at, base + "gas/real-time/days/2025-03-03/2025-03-02", 400},
		{"unknown installation", at, base + "gas/real-time/days/2025-03-01/2025-03-02?installation_id=inst-x", 404},
		{"unknown path", at, "/v2/meter/nothing", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, b := h.get(t, tc.token, tc.path)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, b, tc.code)
			}
			var env struct{ Status, Message string }
			if err := json.Unmarshal(b, &env); err != nil || env.Status == "ok" || env.Message == "" {
				t.Fatalf("error body %s", b)
			}
		})
	}
	req, _ := http.NewRequest(http.MethodDelete, h.srv.URL+"/v2/installations", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || h.fake.Counters.Get("write_attempts") != 1 {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
}

func TestNET2GRIDFaultsPerEndpoint(t *testing.T) {
	t.Parallel()
	h := newN2GHarness(t, NET2GRIDOptions{Seed: 1})
	at, _ := h.login(t, NET2GRIDDemoUser(1))
	h.fake.Faults.Set(NET2GRIDEndpointMeasurements, Fault{Status: 503, Count: 1})
	path := "/v2/energy-measurements/gas/real-time/days/2025-03-01/2025-03-02"
	if code, _ := h.get(t, at, path); code != 503 {
		t.Fatalf("fault: %d, want 503", code)
	}
	if code, _ := h.get(t, at, "/v2/installations"); code != 200 {
		t.Fatalf("other endpoint: %d", code)
	}
	if code, _ := h.get(t, at, path); code != 200 {
		t.Fatalf("after the fault: %d", code)
	}
	if h.fake.Counters.Get("requests."+NET2GRIDEndpointMeasurements) != 1 || h.fake.Counters.Get("faults."+NET2GRIDEndpointMeasurements) != 1 {
		t.Fatalf("counters %v", h.fake.Counters.Snapshot())
	}
}
