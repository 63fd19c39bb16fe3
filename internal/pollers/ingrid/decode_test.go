package ingrid

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenRecord is a decoded record as written in a golden file.
type goldenRecord struct {
	Key  string `json:"key"`
	Time string `json:"time"`
	Body string `json:"body"` // exactly the bytes that are hashed and published
}

// TestDecodersMatchGoldenFiles decodes testdata/pages/<dataset>.json with each dataset's
// decoder and compares with testdata/golden/<dataset>.golden.
func TestDecodersMatchGoldenFiles(t *testing.T) {
	t.Parallel()
	for _, ds := range Datasets {
		t.Run(ds.Name, func(t *testing.T) {
			t.Parallel()
			page, err := os.ReadFile(filepath.Join("testdata", "pages", ds.Name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			recs, err := ds.Decode(page)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(recs) == 0 {
				t.Fatal("no records")
			}
			out := make([]goldenRecord, len(recs))
			for i, r := range recs {
				out[i] = goldenRecord{Key: r.Key, Time: r.Time.UTC().Format(time.RFC3339), Body: string(r.Body)}
			}
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", ds.Name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decoded records differ from %s (run go test -update if the change is intended):\n%s", path, got)
			}
		})
	}
}

func TestDecodersRejectMalformedPages(t *testing.T) {
	t.Parallel()
	notice := `{"noticeId":"N1","updatedAt":"2024-03-31T10:00:00Z","status":"published"}`
	cases := []struct {
		name   string
		decode func([]byte) ([]pollers.Record, error)
		body   string
	}{
		{"empty body", DecodeNotices, ``},
		{"not JSON", DecodeNotices, `<html>maintenance</html>`},
		{"a string", DecodeNotices, `"data"`},
		{"object without data", DecodeNotices, `{"records":[]}`},
		{"data is null", DecodeNotices, `{"data":null}`},
		{"data is an object", DecodeNotices, `{"data":{}}`},
		{"truncated", DecodeNotices, `{"data":[` + notice},
		{"trailing garbage", DecodeNotices, `{"data":[]} {}`},
		{"record not an object", DecodeNotices, `{"data":[42]}`},
		{"record null", DecodeNotices, `{"data":[null]}`},
		{"notice without id", DecodeNotices, `{"data":[{"updatedAt":"2024-03-31T10:00:00Z"}]}`},
		{"notice id not a string", DecodeNotices, `{"data":[{"noticeId":7,"updatedAt":"2024-03-31T10:00:00Z"}]}`},
		{"notice without time", DecodeNotices, `{"data":[{"noticeId":"N1"}]}`},
		{"notice bad time", DecodeNotices, `{"data":[{"noticeId":"N1","updatedAt":"yesterday"}]}`},
		{"daily without gas day", DecodeDaily, `{"data":[{"quantity":1}]}`},
		{"daily bad gas day", DecodeDaily, `{"data":[{"gasDay":"31/03/2024"}]}`},
		{"hourly without hour", DecodeHourly, `{"data":[{"gasDay":"2024-03-31"}]}`},
		{"hourly date only", DecodeHourly, `{"data":[{"hourStart":"2024-03-31"}]}`},
		{"reference without id", DecodeReference("serviceId"), `{"data":[{"updatedAt":"2024-03-31T10:00:00Z"}]}`},
		{"reference without any time", DecodeReference("serviceId"), `{"data":[{"serviceId":"S1"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			recs, err := tc.decode([]byte(tc.body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %d records and error %v, want ErrMalformed", len(recs), err)
			}
		})
	}
}

func TestDecodersAcceptEmptyPagesAndBareArrays(t *testing.T) {
	t.Parallel()
	for _, body := range []string{`{"data":[]}`, `[]`, ` {"count":0,"data":[]} `} {
		recs, err := DecodeDaily([]byte(body))
		if err != nil || len(recs) != 0 {
			t.Errorf("%s: %d records, %v", body, len(recs), err)
		}
	}
	recs, err := DecodeDaily([]byte(`[{"gasDay":"2024-03-31","q":1}]`))
	if err != nil || len(recs) != 1 || recs[0].Key != "2024-03-31" {
		t.Fatalf("bare array: %v %v", recs, err)
	}
}

func TestRecordBodyChangesOnlyWhenAValueDoes(t *testing.T) {
	t.Parallel()
	a, err := DecodeHourly([]byte(`{"data":[{"hourStart":"2024-03-31T04:00:00Z","quantity":1.50,"big":12345678901234567890,"note":"a<b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Same values, other key order, other white space, other offset for the same instant.
	b, err := DecodeHourly([]byte("{ \"data\" : [ {\"note\":\"a<b\", \"big\": 12345678901234567890,\n\"quantity\" : 1.50, \"hourStart\":\"2024-03-31T06:00:00+02:00\"} ] }"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeHourly([]byte(`{"data":[{"hourStart":"2024-03-31T04:00:00Z","quantity":1.51,"big":12345678901234567890,"note":"a<b"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if a[0].Key != "2024-03-31T04:00:00Z" || b[0].Key != a[0].Key || !a[0].Time.Equal(b[0].Time) {
		t.Fatalf("keys %q %q, times %v %v", a[0].Key, b[0].Key, a[0].Time, b[0].Time)
	}
	if !bytes.Equal(a[0].Body, []byte(`{"big":12345678901234567890,"hourStart":"2024-03-31T04:00:00Z","note":"a<b","quantity":1.50}`)) {
		t.Errorf("canonical body %s", a[0].Body)
	}
	// hourStart as written is part of the body: only the key is normalised.
	if bytes.Equal(a[0].Body, c[0].Body) {
		t.Error("a changed quantity kept the same body")
	}
}

func TestDailyRecordTimeIsGasDayStart(t *testing.T) {
	t.Parallel()
	recs, err := DecodeDaily([]byte(`{"data":[{"gasDay":"2024-01-15"},{"gasDay":"2024-07-15"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{time.Date(2024, 1, 15, 5, 0, 0, 0, time.UTC), time.Date(2024, 7, 15, 4, 0, 0, 0, time.UTC)}
	for i, r := range recs {
		if !r.Time.Equal(want[i]) {
			t.Errorf("%s: time %v, want %v", r.Key, r.Time.UTC(), want[i])
		}
	}
}

// checkDecoded is the property every fuzz target checks: a decoder either fails with
// ErrMalformed, or every record has a key, a time and a canonical JSON body that decodes to
// itself again.
func checkDecoded(t *testing.T, decode func([]byte) ([]pollers.Record, error), data []byte) {
	recs, err := decode(data)
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error without ErrMalformed: %v", err)
		}
		return
	}
	bodies := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		if r.Key == "" || r.Time.IsZero() || !json.Valid(r.Body) {
			t.Fatalf("record %d: key %q time %v body %q", i, r.Key, r.Time, r.Body)
		}
		bodies[i] = r.Body
	}
	page, err := json.Marshal(map[string]any{"data": bodies})
	if err != nil {
		t.Fatal(err)
	}
	again, err := decode(page)
	if err != nil {
		t.Fatalf("re-decoding canonical bodies: %v", err)
	}
	for i := range recs {
		if again[i].Key != recs[i].Key || !bytes.Equal(again[i].Body, recs[i].Body) || !again[i].Time.Equal(recs[i].Time) {
			t.Fatalf("record %d not stable: %q %s, then %q %s", i, recs[i].Key, recs[i].Body, again[i].Key, again[i].Body)
		}
	}
}

func addPages(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", "pages", n+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecodeNotices(f *testing.F) {
	addPages(f, "operational-notices", "confirmation-notice", "consolidated-maintenance-programs")
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoded(t, DecodeNotices, data) })
}

func FuzzDecodeDaily(f *testing.F) {
	addPages(f, "daily-allocations", "common-indicators", "daily-contractual-forecasts")
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoded(t, DecodeDaily, data) })
}

func FuzzDecodeHourly(f *testing.F) {
	addPages(f, "hourly-allocations", "intraday-distributed-quantities")
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoded(t, DecodeHourly, data) })
}

func FuzzDecodeReference(f *testing.F) {
	addPages(f, "services")
	decode := DecodeReference("serviceId")
	f.Fuzz(func(t *testing.T, data []byte) { checkDecoded(t, decode, data) })
}
