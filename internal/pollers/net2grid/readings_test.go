package net2grid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

var update = flag.Bool("update", false, "rewrite golden files")

// goldenRecord is the golden-file form of a record.
type goldenRecord struct {
	Key  string          `json:"key"`
	Time time.Time       `json:"time"`
	Body json.RawMessage `json:"body"`
}

func TestDecodeReadingsGolden(t *testing.T) {
	t.Parallel()
	in, err := os.ReadFile(filepath.Join("testdata", "readings_page.json"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := DecodeReadings(in)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]goldenRecord, len(recs))
	for i, r := range recs {
		out[i] = goldenRecord{r.Key, r.Time, r.Body}
	}
	got, _ := json.MarshalIndent(out, "", "  ")
	got = append(got, '\n')
	golden := filepath.Join("testdata", "readings_page.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("decoded page differs from %s:\n%s", golden, got)
	}
}

func TestDecodeReadingsIsDeterministic(t *testing.T) {
	t.Parallel()
	in, _ := os.ReadFile(filepath.Join("testdata", "readings_page.json"))
	a, err := DecodeReadings(in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DecodeReadings(in)
	for i := range a {
		if a[i].Key != b[i].Key || !bytes.Equal(a[i].Body, b[i].Body) {
			t.Fatalf("record %d differs between two decodes", i)
		}
	}
	// The +01:00 timestamp is keyed in UTC.
	if a[len(a)-1].Key != "inst-0a1b2c3d4e5f/electricity-offtake/2025-03-10T11:15:00Z" {
		t.Fatalf("last key %q", a[len(a)-1].Key)
	}
}

func TestDecodeReadingsRejectsMalformedPages(t *testing.T) {
	t.Parallel()
	wrap := func(body string) string {
		return `{"pages":[{"installation_id":"i1","metric":"gas","body":` + body + `}]}`
	}
	ok := `{"status":"ok","data":{"results":[{"timestamp":"2025-03-10T11:00:00Z","value":1}]}}`
	cases := []struct{ name, page string }{
		{"not JSON", `<html>maintenance</html>`},
		{"no pages", `{}`},
		{"missing installation", `{"pages":[{"metric":"gas","body":` + ok + `}]}`},
		{"error status", wrap(`{"status":"error","message":"boom"}`)},
		{"no data", wrap(`{"status":"ok"}`)},
		{"no results", wrap(`{"status":"ok","data":{}}`)},
		{"bad timestamp", wrap(`{"status":"ok","data":{"results":[{"timestamp":"2025-03-10 11:00","value":1}]}}`)},
		{"value not a number", wrap(`{"status":"ok","data":{"results":[{"timestamp":"2025-03-10T11:00:00Z","value":"x"}]}}`)},
		{"value missing", wrap(`{"status":"ok","data":{"results":[{"timestamp":"2025-03-10T11:00:00Z"}]}}`)},
		{"other installation", wrap(`{"status":"ok","data":{"installation_id":"i2","results":[]}}`)},
		{"other metric", wrap(`{"status":"ok","data":{"metric":"electricity-offtake","results":[]}}`)},
		{"not quarters", wrap(`{"status":"ok","data":{"interval":"days","results":[]}}`)},
		{"repeated quarter", wrap(`{"status":"ok","data":{"results":[{"timestamp":"2025-03-10T11:00:00Z","value":1},{"timestamp":"2025-03-10T12:00:00+01:00","value":2}]}}`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if recs, err := DecodeReadings([]byte(tc.page)); err == nil {
				t.Fatalf("accepted: %v", recs)
			} else if strings.Contains(tc.name, "JSON") && !errors.Is(err, errBadAnswer) {
				t.Fatalf("error %v does not wrap errBadAnswer", err)
			}
		})
	}
	if recs, err := DecodeReadings([]byte(wrap(ok))); err != nil || len(recs) != 1 {
		t.Fatalf("good page: %v %v", recs, err)
	}
}

func TestReadingsRequestRoundsTheWindow(t *testing.T) {
	t.Parallel()
	p := pollers.Partition{ID: "u-0123456789abcdef", Params: map[string]string{ParamTargets: "i1:gas,i1:electricity-offtake"}}
	w := pollers.Window{
		From: time.Date(2025, 3, 10, 11, 7, 30, 0, time.UTC),
		To:   time.Date(2025, 3, 10, 13, 0, 0, 500, time.FixedZone("x", 3600)),
	}
	path, q := readingsRequest(p, w)
	if path != "/energy-measurements/{metric}/real-time/quarters/2025-03-10T11:00:00/2025-03-10T12:00:01" {
		t.Fatalf("path %s", path)
	}
	if got := strings.Join(q["target"], " "); got != "i1:gas i1:electricity-offtake" {
		t.Fatalf("targets %s", got)
	}
}

// recordingFetcher answers every GET with a canned body and remembers the requests.
type recordingFetcher struct {
	got  []string
	body string
}

func (f *recordingFetcher) Get(_ context.Context, path string, q url.Values) ([]byte, error) {
	f.got = append(f.got, path+"?"+q.Encode())
	return []byte(f.body), nil
}

func TestReadingsFetcherCallsEveryTarget(t *testing.T) {
	t.Parallel()
	rf := &recordingFetcher{body: `{"status":"ok","data":{"results":[]}}`}
	page, err := readingsFetcher{api: rf}.Get(context.Background(),
		"/energy-measurements/{metric}/real-time/quarters/a/b", url.Values{"target": {"i1:gas", "i 2:electricity-offtake"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/energy-measurements/gas/real-time/quarters/a/b?installation_id=i1",
		"/energy-measurements/electricity-offtake/real-time/quarters/a/b?installation_id=i+2",
	}
	if strings.Join(rf.got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s", strings.Join(rf.got, "\n"))
	}
	if recs, err := DecodeReadings(page); err != nil || len(recs) != 0 {
		t.Fatalf("page: %v %v", recs, err)
	}
	rf.body = `<html>`
	if _, err := (readingsFetcher{api: rf}).Get(context.Background(), "/energy-measurements/{metric}/x", url.Values{"target": {"i1:gas"}}); err == nil {
		t.Fatal("a non-JSON answer was accepted")
	}
}

func FuzzDecodeReadings(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "readings_page.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"pages":[]}`))
	f.Add([]byte(`{"pages":[{"installation_id":"i","metric":"gas","body":{"status":"ok","data":{"results":[{"timestamp":"2025-03-10T11:00:00Z","value":1e3}]}}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := DecodeReadings(b)
		if err != nil {
			return
		}
		for i, r := range recs {
			if r.Key == "" || !json.Valid(r.Body) || r.Time.IsZero() && !strings.Contains(r.Key, "0001-01-01") {
				t.Fatalf("record %d unusable: %+v", i, r)
			}
			if i > 0 && r.Time.Before(recs[i-1].Time) {
				t.Fatalf("records out of order at %d", i)
			}
		}
		again, err := DecodeReadings(b)
		if err != nil || len(again) != len(recs) {
			t.Fatalf("second decode differs: %v", err)
		}
		for i := range recs {
			if !bytes.Equal(recs[i].Body, again[i].Body) || recs[i].Key != again[i].Key {
				t.Fatalf("record %d not deterministic", i)
			}
		}
	})
}
