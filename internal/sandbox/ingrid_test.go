package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ingridT0 is a Monday morning after the spring DST change: gas day 2024-03-30 had 23 hours.
var ingridT0 = time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC)

type ingridHarness struct {
	fake  *INGRID
	srv   *httptest.Server
	clock *FakeClock
}

func newINGRIDHarness(t *testing.T, opts INGRIDOptions) *ingridHarness {
	t.Helper()
	clock := NewFakeClock(ingridT0)
	if opts.Clock == nil {
		opts.Clock = clock
	}
	f := NewINGRID(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &ingridHarness{fake: f, srv: srv, clock: clock}
}

// token fetches an access token with the given credentials; it returns the status and the
// decoded answer.
func (h *ingridHarness) token(t *testing.T, id, secret, grant string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+INGRIDTokenPath, strings.NewReader(url.Values{"grant_type": {grant}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	return h.do(t, req)
}

func (h *ingridHarness) goodToken(t *testing.T) string {
	t.Helper()
	status, body := h.token(t, INGRIDDemoClientID, INGRIDDemoClientSecret, "client_credentials")
	if status != http.StatusOK {
		t.Fatalf("token: status %d %v", status, body)
	}
	return body["access_token"].(string)
}

func (h *ingridHarness) get(t *testing.T, authz, dataset string, q url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.srv.URL+"/"+dataset+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	return h.do(t, req)
}

func (h *ingridHarness) do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %q", req.Method, req.URL.Path, raw)
	}
	return resp.StatusCode, body
}

// data GETs a dataset for the demo contract and returns its records.
func (h *ingridHarness) data(t *testing.T, tok, dataset, start, end string) []map[string]any {
	t.Helper()
	status, body := h.get(t, "Bearer "+tok, dataset, url.Values{"contractCode": {INGRIDDemoContract}, "startDate": {start}, "endDate": {end}})
	if status != http.StatusOK {
		t.Fatalf("%s: status %d %v", dataset, status, body)
	}
	arr, ok := body["data"].([]any)
	if !ok {
		t.Fatalf("%s: no data array in %v", dataset, body)
	}
	if int(body["count"].(float64)) != len(arr) {
		t.Fatalf("%s: count %v for %d records", dataset, body["count"], len(arr))
	}
	out := make([]map[string]any, len(arr))
	for i, r := range arr {
		out[i] = r.(map[string]any)
	}
	return out
}

func TestINGRIDTokenAcceptsGoodCredentials(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{})
	status, body := h.token(t, INGRIDDemoClientID, INGRIDDemoClientSecret, "client_credentials")
	if status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	if body["token_type"] != "Bearer" || body["expires_in"] != float64(7200) || body["access_token"] == "" {
		t.Fatalf("answer %v", body)
	}
	if got := h.fake.Counters.Get("token.issued"); got != 1 {
		t.Fatalf("token.issued = %d", got)
	}
}

func TestINGRIDTokenRejectsBadCredentials(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{})
	cases := []struct {
		name, id, secret, grant string
		status                  int
		errCode                 string
	}{
		{"wrong secret", INGRIDDemoClientID, "nope", "client_credentials", 401, "invalid_client"},
		{"wrong id", "someone", INGRIDDemoClientSecret, "client_credentials", 401, "invalid_client"},
		{"no basic auth", "", "", "client_credentials", 401, "invalid_client"},
		{"other grant", INGRIDDemoClientID, INGRIDDemoClientSecret, "password", 400, "unsupported_grant_type"},
	}
	for _, tc := range cases {
		status, body := h.token(t, tc.id, tc.secret, tc.grant)
		if status != tc.status || body["error"] != tc.errCode {
			t.Errorf("%s: got %d %v, want %d %s", tc.name, status, body, tc.status, tc.errCode)
		}
		if _, ok := body["access_token"]; ok {
			t.Errorf("%s: token issued", tc.name)
		}
	}
	if got := h.fake.Counters.Get("token.rejected"); got != int64(len(cases)) {
		t.Fatalf("token.rejected = %d, want %d", got, len(cases))
	}
	if got := h.fake.Counters.Get("token.issued"); got != 0 {
		t.Fatalf("token.issued = %d", got)
	}
}

func TestINGRIDTokenAcceptsFormEncodedBasicAuth(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{ClientID: "id:with space", ClientSecret: "s/cr+t"})
	status, body := h.token(t, url.QueryEscape("id:with space"), url.QueryEscape("s/cr+t"), "client_credentials")
	if status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
}

func TestINGRIDDataNeedsLiveToken(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{TokenTTL: time.Hour})
	q := url.Values{"contractCode": {INGRIDDemoContract}, "startDate": {"2024-03-25"}, "endDate": {"2024-03-31"}}
	tok := h.goodToken(t)
	if status, body := h.get(t, "Bearer "+tok, "daily-allocations", q); status != http.StatusOK {
		t.Fatalf("good token: %d %v", status, body)
	}
	if status, _ := h.get(t, tok, "daily-allocations", q); status != http.StatusOK {
		t.Fatalf("bare token (as the guide shows it): %d", status)
	}
	for name, authz := range map[string]string{"missing": "", "unknown": "Bearer abc", "basic": "Basic " + tok} {
		if status, body := h.get(t, authz, "daily-allocations", q); status != http.StatusUnauthorized || body["error"] != "invalid_token" {
			t.Errorf("%s token: %d %v", name, status, body)
		}
	}

	h.clock.Advance(time.Hour)
	if status, _ := h.get(t, "Bearer "+tok, "daily-allocations", q); status != http.StatusUnauthorized {
		t.Errorf("expired token: %d", status)
	}

	tok = h.goodToken(t)
	h.fake.RevokeTokens()
	if status, _ := h.get(t, "Bearer "+tok, "daily-allocations", q); status != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", status)
	}
	if got := h.fake.Counters.Get("unauthorized.daily-allocations"); got != 5 {
		t.Errorf("unauthorized.daily-allocations = %d, want 5", got)
	}
}

func TestINGRIDRejectsUnknownContractAndBadPeriods(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{})
	tok := h.goodToken(t)
	cases := []struct {
		name, dataset, contract, start, end string
		status                              int
	}{
		{"unknown contract", "services", "OTHER", "2024-03-01", "2024-03-31", 404},
		{"no contract", "services", "", "2024-03-01", "2024-03-31", 400},
		{"no dates", "daily-allocations", INGRIDDemoContract, "", "", 400},
		{"date-time on daily", "daily-allocations", INGRIDDemoContract, "2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z", 400},
		{"date on hourly", "hourly-allocations", INGRIDDemoContract, "2024-03-01", "2024-03-02", 400},
		{"end before start", "daily-allocations", INGRIDDemoContract, "2024-03-02", "2024-03-01", 400},
		{"too long daily", "daily-allocations", INGRIDDemoContract, "2024-01-01", "2024-03-31", 400},
		{"too long hourly", "hourly-measures", INGRIDDemoContract, "2024-03-01T00:00:00Z", "2024-03-20T00:00:00Z", 400},
	}
	for _, tc := range cases {
		q := url.Values{"contractCode": {tc.contract}, "startDate": {tc.start}, "endDate": {tc.end}}
		status, body := h.get(t, "Bearer "+tok, tc.dataset, q)
		if status != tc.status || body["message"] == nil {
			t.Errorf("%s: got %d %v, want %d with a message", tc.name, status, body, tc.status)
		}
	}
	if status, _ := h.get(t, "Bearer "+tok, "no-such-dataset", url.Values{}); status != http.StatusNotFound {
		t.Errorf("unknown path: %d", status)
	}
}

func TestINGRIDServesEveryDataset(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{})
	tok := h.goodToken(t)
	names := INGRIDDatasets()
	if len(names) != 19 {
		t.Fatalf("%d datasets, want the guide's 19", len(names))
	}
	hourly := map[string]bool{"hourly-measures": true, "hourly-allocations": true, "hourly-exceeding": true, "intraday-distributed-quantities": true}
	for _, name := range names {
		start, end := "2024-03-25", "2024-03-31"
		if name == "daily-contractual-forecasts" {
			end = "2024-04-05"
		}
		if hourly[name] {
			start, end = "2024-03-30T05:00:00Z", "2024-03-31T05:00:00Z"
		}
		recs := h.data(t, tok, name, start, end)
		if len(recs) == 0 {
			t.Errorf("%s: no records", name)
			continue
		}
		for _, r := range recs {
			if r["contractCode"] != INGRIDDemoContract || r["version"] == nil || r["updatedAt"] == nil {
				t.Errorf("%s: record without contractCode, version or updatedAt: %v", name, r)
				break
			}
		}
		if got := h.fake.Counters.Get("requests." + name); got != 1 {
			t.Errorf("requests.%s = %d", name, got)
		}
	}
}

func TestINGRIDGasDaysHave23Or25Hours(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{})
	h.clock.Set(time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC))
	tok := h.goodToken(t)
	cases := []struct {
		name, gasDay string
		hours        int
	}{
		{"spring forward (night of 31 March)", "2024-03-30", 23},
		{"ordinary", "2024-03-31", 24},
		{"fall back (night of 27 October)", "2024-10-26", 25},
	}
	for _, tc := range cases {
		d, _ := time.ParseInLocation(ingridDateLayout, tc.gasDay, ingridParis)
		from := ingridGasDayStart(d.Year(), d.Month(), d.Day())
		to := ingridNextGasDay(from)
		recs := h.data(t, tok, "hourly-allocations", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
		if len(recs) != tc.hours {
			t.Errorf("%s: %d hours, want %d", tc.name, len(recs), tc.hours)
		}
		for _, r := range recs {
			if r["gasDay"] != tc.gasDay {
				t.Errorf("%s: hour %v in gas day %v", tc.name, r["hourStart"], r["gasDay"])
			}
		}
	}
}

func TestINGRIDSeriesAreRevisedOverSimulatedTime(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{TokenTTL: 365 * 24 * time.Hour})
	tok := h.goodToken(t)
	paris := func(d, hh int) time.Time { return time.Date(2024, 4, d, hh, 0, 0, 0, ingridParis) }
	steps := []struct {
		name    string
		at      time.Time
		status  string
		version float64
	}{
		{"before publication", paris(2, 6), "", 0},
		{"provisional on D+1 morning", paris(2, 8), "provisional", 1},
		{"validated after D+1 13:00", paris(2, 14), "validated", 2},
		{"still validated", paris(20, 12), "validated", 2},
		{"monthly final", time.Date(2024, 5, 5, 13, 0, 0, 0, ingridParis), "final", 3},
	}
	var last map[string]any
	for _, st := range steps {
		h.clock.Set(st.at)
		recs := h.data(t, tok, "daily-allocations", "2024-04-01", "2024-04-01")
		if st.version == 0 {
			if len(recs) != 0 {
				t.Fatalf("%s: %v", st.name, recs)
			}
			continue
		}
		if len(recs) != 1 {
			t.Fatalf("%s: %d records", st.name, len(recs))
		}
		r := recs[0]
		if r["gasDay"] != "2024-04-01" || r["status"] != st.status || r["version"] != st.version {
			t.Fatalf("%s: %v", st.name, r)
		}
		if last != nil && last["version"] != r["version"] && last["allocatedEntryQuantity"] == r["allocatedEntryQuantity"] {
			t.Errorf("%s: a revision kept the value %v", st.name, r["allocatedEntryQuantity"])
		}
		last = r
	}
}

func TestINGRIDNoticesAreUpdatedAndWithdrawn(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{TokenTTL: 365 * 24 * time.Hour})
	tok := h.goodToken(t)
	for _, name := range []string{"operational-notices", "confirmation-notice", "consolidated-maintenance-programs"} {
		h.clock.Set(ingridT0)
		seen := map[string]map[string]any{}
		updated, withdrawn := 0, 0
		for step := 0; step < 20; step++ {
			for _, r := range h.data(t, tok, name, "2024-03-01", "2024-04-30") {
				id := r["noticeId"].(string)
				if prev, ok := seen[id]; ok {
					if r["version"].(float64) < prev["version"].(float64) {
						t.Fatalf("%s %s: version went back: %v then %v", name, id, prev, r)
					}
					if prev["status"] == "withdrawn" && r["version"] != prev["version"] {
						t.Fatalf("%s %s: changed after withdrawal: %v", name, id, r)
					}
					if r["version"] != prev["version"] {
						switch r["status"] {
						case "updated":
							updated++
						case "withdrawn":
							withdrawn++
						default:
							t.Fatalf("%s %s: new version with status %v", name, id, r["status"])
						}
					}
				}
				seen[id] = r
			}
			h.clock.Advance(12 * time.Hour)
		}
		if updated == 0 || withdrawn == 0 {
			t.Errorf("%s: over 10 days %d updates and %d withdrawals seen", name, updated, withdrawn)
		}
	}
}

func TestINGRIDReferenceDataChangesRarely(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{TokenTTL: 365 * 24 * time.Hour})
	tok := h.goodToken(t)
	for _, name := range []string{"services", "supply-links", "pce-connection-links", "upstream-allocated-capacities", "standardized-capacity-subscriptions", "downstream-allocated-capacities"} {
		h.clock.Set(ingridT0)
		a, _ := json.Marshal(h.data(t, tok, name, "2024-04-01", "2024-04-01"))
		h.clock.Advance(time.Minute)
		b, _ := json.Marshal(h.data(t, tok, name, "2024-04-01", "2024-04-01"))
		if string(a) != string(b) {
			t.Errorf("%s changed within a minute", name)
		}
		h.clock.Advance(3 * 24 * time.Hour)
		c := h.data(t, tok, name, "2024-04-01", "2024-04-01")
		var before []map[string]any
		_ = json.Unmarshal(a, &before)
		changed := 0
		for i := range c {
			if c[i]["version"] != before[i]["version"] {
				changed++
			}
		}
		if changed == 0 {
			t.Errorf("%s: %d of %d items changed in 3 days", name, changed, len(c))
		}
	}
}

func TestINGRIDDataIsDeterministicPerSeed(t *testing.T) {
	t.Parallel()
	get := func(seed int64) string {
		h := newINGRIDHarness(t, INGRIDOptions{Seed: seed})
		tok := h.goodToken(t)
		var all []any
		for _, name := range []string{"operational-notices", "daily-measures", "services"} {
			all = append(all, h.data(t, tok, name, "2024-03-20", "2024-03-31"))
		}
		b, _ := json.Marshal(all)
		return string(b)
	}
	if first, again := get(7), get(7); first != again {
		t.Fatal("same seed, different data")
	}
	if get(7) == get(8) {
		t.Fatal("different seeds, same data")
	}
}

func TestINGRIDFaultsApplyPerEndpoint(t *testing.T) {
	t.Parallel()
	h := newINGRIDHarness(t, INGRIDOptions{})
	tok := h.goodToken(t)
	h.fake.Faults.Set("daily-measures", Fault{Status: http.StatusServiceUnavailable, Count: 1})
	q := url.Values{"contractCode": {INGRIDDemoContract}, "startDate": {"2024-03-25"}, "endDate": {"2024-03-31"}}
	if status, _ := h.get(t, "Bearer "+tok, "daily-measures", q); status != http.StatusServiceUnavailable {
		t.Fatalf("first call: %d", status)
	}
	if status, _ := h.get(t, "Bearer "+tok, "daily-allocations", q); status != http.StatusOK {
		t.Fatalf("other endpoint: %d", status)
	}
	if status, _ := h.get(t, "Bearer "+tok, "daily-measures", q); status != http.StatusOK {
		t.Fatalf("second call: %d", status)
	}
	h.fake.Faults.Set(INGRIDTokenEndpoint, Fault{Status: http.StatusBadGateway, Count: 1})
	if status, _ := h.token(t, INGRIDDemoClientID, INGRIDDemoClientSecret, "client_credentials"); status != http.StatusBadGateway {
		t.Fatalf("token fault: %d", status)
	}
	if got := h.fake.Counters.Get("faults.daily-measures"); got != 1 {
		t.Errorf("faults.daily-measures = %d", got)
	}
	if got := h.fake.Counters.Get("requests.daily-measures"); got != 2 {
		t.Errorf("requests.daily-measures = %d", got)
	}
}

func TestINGRIDGasDayHelpers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		at   time.Time
		want string
	}{
		{"before 06:00 Paris belongs to the previous day", time.Date(2024, 1, 10, 4, 59, 0, 0, time.UTC), "2024-01-09"},
		{"06:00 CET starts the day", time.Date(2024, 1, 10, 5, 0, 0, 0, time.UTC), "2024-01-10"},
		{"06:00 CEST starts the day", time.Date(2024, 7, 10, 4, 0, 0, 0, time.UTC), "2024-07-10"},
		{"05:30 CEST is still the previous day", time.Date(2024, 7, 10, 3, 30, 0, 0, time.UTC), "2024-07-09"},
	}
	for _, tc := range cases {
		if got := ingridDate(ingridGasDayOf(tc.at)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
