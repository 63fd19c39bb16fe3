package ingrid

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
)

func TestDatasetsAreTheGuides19(t *testing.T) {
	t.Parallel()
	var names []string
	for _, d := range Datasets {
		names = append(names, d.Name)
		if d.Source != SourceName || d.Cadence <= 0 || d.LookBack <= 0 || d.Backfill <= 0 || d.Request == nil || d.Decode == nil || d.PageSize != 0 {
			t.Errorf("%s: incomplete declaration %+v", d.Name, d)
		}
		if Lookup(d.Name) != d {
			t.Errorf("Lookup(%q) is not the declared dataset", d.Name)
		}
	}
	// The fake serves the names of the guide; the client must declare exactly those.
	if want := sandbox.INGRIDDatasets(); !slices.Equal(names, want) {
		t.Fatalf("datasets\n%v\nwant the guide's\n%v", names, want)
	}
	if len(names) != 19 {
		t.Fatalf("%d datasets", len(names))
	}
}

func TestDailyRequestCoversWholeGasDays(t *testing.T) {
	t.Parallel()
	p := pollers.Partition{ID: "C1"}
	cases := []struct {
		name       string
		ds         *pollers.Dataset
		from, to   time.Time
		start, end string
	}{
		{"window inside gas days", DailyAllocations,
			time.Date(2024, 3, 30, 10, 0, 0, 0, time.UTC), time.Date(2024, 4, 1, 3, 0, 0, 0, time.UTC), "2024-03-30", "2024-03-31"},
		{"window ending on a gas day start excludes that day", DailyAllocations,
			time.Date(2024, 3, 30, 5, 0, 0, 0, time.UTC), time.Date(2024, 4, 1, 4, 0, 0, 0, time.UTC), "2024-03-30", "2024-03-31"},
		{"notices by gas day of change", OperationalNotices,
			time.Date(2024, 1, 1, 4, 0, 0, 0, time.UTC), time.Date(2024, 1, 1, 6, 0, 0, 0, time.UTC), "2023-12-31", "2024-01-01"},
		{"forecasts read ahead", DailyContractualForecasts,
			time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC), time.Date(2024, 4, 2, 10, 0, 0, 0, time.UTC), "2024-04-01", "2024-05-12"},
		{"reference data", Services,
			time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC), time.Date(2024, 4, 2, 10, 0, 0, 0, time.UTC), "2024-04-01", "2024-04-02"},
	}
	for _, tc := range cases {
		path, q := tc.ds.Request(p, pollers.Window{From: tc.from, To: tc.to})
		if path != "/"+tc.ds.Name || q.Get("contractCode") != "C1" || q.Get("startDate") != tc.start || q.Get("endDate") != tc.end {
			t.Errorf("%s: %s?%s, want startDate=%s endDate=%s", tc.name, path, q.Encode(), tc.start, tc.end)
		}
	}
}

func TestHourlyRequestStartsAtTheGasDayStart(t *testing.T) {
	t.Parallel()
	p := pollers.Partition{ID: "C1", Params: map[string]string{"contractCode": "raw.code"}}
	path, q := HourlyAllocations.Request(p, pollers.Window{
		From: time.Date(2024, 3, 31, 10, 17, 0, 0, time.UTC),
		To:   time.Date(2024, 4, 1, 10, 17, 0, 0, time.UTC),
	})
	if path != "/hourly-allocations" || q.Get("contractCode") != "raw.code" ||
		q.Get("startDate") != "2024-03-31T04:00:00Z" || q.Get("endDate") != "2024-04-01T11:00:00Z" {
		t.Fatalf("%s?%s", path, q.Encode())
	}
}

func demoOptions(base string) Options {
	return Options{
		APIBase: base, TokenURL: base + sandbox.INGRIDTokenPath,
		ClientID: sandbox.INGRIDDemoClientID, ClientSecret: secret.New(sandbox.INGRIDDemoClientSecret),
		Contracts: []string{sandbox.INGRIDDemoContract},
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no contracts", func(o *Options) { o.Contracts = nil }, "Contracts"},
		{"empty contract", func(o *Options) { o.Contracts = []string{"A", " "} }, "Contracts[1]"},
		{"duplicate contract", func(o *Options) { o.Contracts = []string{"A", "A"} }, `"A" listed twice`},
		{"contracts differing in case", func(o *Options) { o.Contracts = []string{"ab1", "AB1"} }, `"AB1" listed twice`},
		{"unknown dataset", func(o *Options) { o.Datasets = []string{"services", "hourly-allocation"} }, `"hourly-allocation"`},
		{"no client id", func(o *Options) { o.ClientID = "" }, "ClientID"},
		{"no client secret", func(o *Options) { o.ClientSecret = secret.Value{} }, "ClientSecret"},
		{"plain http to a remote host", func(o *Options) { o.APIBase = "http://api.ingrid.grtgaz.com" }, "APIBase"},
		{"credentials in the token URL", func(o *Options) { o.TokenURL = "https://u:p@auth.example/token" }, "TokenURL"},
		{"white space in the scheme", func(o *Options) { o.AuthScheme = "Bear er" }, "AuthScheme"},
	}
	for _, tc := range cases {
		o := demoOptions("http://127.0.0.1:1")
		tc.change(&o)
		_, err := New(o)
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalidOptions naming %s", tc.name, err, tc.want)
		}
	}
}

func TestJobsAreContractsTimesEnabledDatasets(t *testing.T) {
	t.Parallel()
	o := demoOptions("http://127.0.0.1:1")
	o.Contracts = []string{"C1", "C2"}
	o.Datasets = []string{"services", "daily-allocations", "operational-notices"}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := s.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID())
		if j.Fetcher != jobs[0].Fetcher {
			t.Error("jobs do not share one upstream client")
		}
	}
	want := []string{
		"ingrid.services.c1", "ingrid.operational-notices.c1", "ingrid.daily-allocations.c1",
		"ingrid.services.c2", "ingrid.operational-notices.c2", "ingrid.daily-allocations.c2",
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("job ids %v, want %v", ids, want)
	}
	all, err := New(demoOptions("http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if jobs, _ := all.Jobs(context.Background()); len(jobs) != 19 {
		t.Fatalf("no Datasets option: %d jobs, want all 19", len(jobs))
	}
}

func TestWrongSecretFailsWithoutLeakingIt(t *testing.T) {
	t.Parallel()
	clock := quota.NewFakeClock(time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC))
	fake := sandbox.NewINGRID(sandbox.INGRIDOptions{Clock: clock})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	o := demoOptions(srv.URL)
	const wrong = "wrong-secret-value-123"
	o.ClientSecret = secret.New(wrong)
	o.Clock = clock
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	path, q := Services.Request(pollers.Partition{ID: sandbox.INGRIDDemoContract}, pollers.Window{From: clock.Now().Add(-time.Hour), To: clock.Now()})
	_, err = s.jobs[0].Fetcher.Get(context.Background(), path, q)
	if err == nil {
		t.Fatal("a wrong secret fetched data")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("error leaks the secret: %v", err)
	}
	if h := s.Health(); len(h) != 1 || h[0].State == "ok" || strings.Contains(h[0].LastError, wrong) {
		t.Fatalf("health %+v", h)
	}
	if fake.Counters.Get("token.rejected") == 0 {
		t.Fatal("the fake saw no rejected token request")
	}
}
