package grex

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenRecord is how a decoded record is written in a golden file.
type goldenRecord struct {
	Key  string          `json:"key"`
	Time time.Time       `json:"time"`
	Body json.RawMessage `json:"body"`
}

func TestDecodersMatchGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, input string
		decode      func([]byte) ([]pollers.Record, error)
	}{
		{name: "certificates", input: "certificates.page.json", decode: DecodeCertificates},
		{name: "transactions", input: "transactions.page.json", decode: DecodeTransactions},
		{name: "accounts", input: "account.json", decode: DecodeAccount},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in, err := os.ReadFile(filepath.Join("testdata", tc.input))
			if err != nil {
				t.Fatal(err)
			}
			recs, err := tc.decode(in)
			if err != nil {
				t.Fatal(err)
			}
			out := make([]goldenRecord, len(recs))
			for i, r := range recs {
				out[i] = goldenRecord{Key: r.Key, Time: r.Time, Body: r.Body}
			}
			got, err := json.MarshalIndent(out, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
				t.Fatalf("decoded %s differs from %s:\n%s", tc.input, golden, got)
			}
		})
	}
}

func TestDecodersRejectMalformedPages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
	}{
		{name: "html error page", body: "<!DOCTYPE html><html><body>403 Forbidden</body></html>"},
		{name: "empty", body: ""},
		{name: "truncated", body: `{"value":[{"BundleId":"B1","ModifiedAt":"2025-01-01T00:00:00Z"`},
		{name: "no value array", body: `{"statusCode":400,"responseCode":"ACCOUNT_002","responseMessage":"x"}`},
		{name: "value null", body: `{"value":null}`},
		{name: "value not array", body: `{"value":{}}`},
		{name: "item not object", body: `{"value":[42]}`},
		{name: "missing key", body: `{"value":[{"ModifiedAt":"2025-01-01T00:00:00Z"}]}`},
		{name: "empty key", body: `{"value":[{"BundleId":"","ModifiedAt":"2025-01-01T00:00:00Z"}]}`},
		{name: "numeric key", body: `{"value":[{"BundleId":7,"ModifiedAt":"2025-01-01T00:00:00Z"}]}`},
		{name: "missing time", body: `{"value":[{"BundleId":"B1"}]}`},
		{name: "bad time", body: `{"value":[{"BundleId":"B1","ModifiedAt":"01/01/2025"}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if recs, err := DecodeCertificates([]byte(tc.body)); err == nil {
				t.Fatalf("accepted %q as %v", tc.body, recs)
			}
		})
	}
	if _, err := DecodeAccount([]byte(`{"value":[]}`)); err == nil {
		t.Fatal("account decoder accepted a list")
	}
}

func TestDecodeEmptyPageIsNoRecords(t *testing.T) {
	t.Parallel()
	recs, err := DecodeTransactions([]byte(`{"value":[]}`))
	if err != nil || len(recs) != 0 {
		t.Fatalf("%v %v", recs, err)
	}
}

func TestRequestPagesWithoutSlashes(t *testing.T) {
	t.Parallel()
	p := pollers.Partition{ID: "FR0001", Params: map[string]string{paramAccount: "FR0001"}}
	from := time.Date(2025, 6, 1, 10, 0, 0, 0, time.FixedZone("CEST", 7200))
	to := from.Add(time.Hour)
	cases := []struct {
		name string
		w    pollers.Window
		want url.Values
	}{
		{name: "full load", w: pollers.Window{Top: 100, To: to}, want: url.Values{
			"$top": {"100"}, "$orderby": {"ModifiedAt asc,BundleId asc"},
			"$filter": {"ModifiedAt ge 1970-01-01T00:00:00Z and ModifiedAt lt 2025-06-01T09:00:00Z"}}},
		{name: "changed since", w: pollers.Window{From: from, To: to, Skip: 3, Top: 50}, want: url.Values{
			"$top": {"50"}, "$skip": {"3"}, "$orderby": {"ModifiedAt asc,BundleId asc"},
			"$filter": {"ModifiedAt ge 2025-06-01T08:00:00Z and ModifiedAt lt 2025-06-01T09:00:00Z"}}},
		{name: "top capped", w: pollers.Window{From: from, Top: 1000}, want: url.Values{
			"$top": {"100"}, "$orderby": {"ModifiedAt asc,BundleId asc"},
			"$filter": {"ModifiedAt ge 2025-06-01T08:00:00Z"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, q := Certificates.Request(p, tc.w)
			if path != "/AH/managementapi/v2/Accounts/FR0001/CertificateBundles" {
				t.Fatalf("path %s", path)
			}
			if q.Encode() != tc.want.Encode() {
				t.Fatalf("query %s, want %s", q.Encode(), tc.want.Encode())
			}
			for k, vs := range q {
				for _, v := range vs {
					if strings.Contains(v, "/") {
						t.Fatalf("%s=%s holds a slash: the firewall answers 403", k, v)
					}
				}
			}
		})
	}
}

func FuzzDecodeCertificates(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "certificates.page.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"value":[]}`))
	fuzzDecoder(f, DecodeCertificates, fieldBundleID)
}

func FuzzDecodeTransactions(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "transactions.page.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	fuzzDecoder(f, DecodeTransactions, fieldTransactionID)
}

func FuzzDecodeAccount(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "account.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	fuzzDecoder(f, DecodeAccount, fieldAccountNumber)
}

// fuzzDecoder checks what the loop relies on: no panic, and every record accepted has a
// non-empty key, a time, and a body that is valid JSON and decodes to the same key again.
func fuzzDecoder(f *testing.F, decode func([]byte) ([]pollers.Record, error), keyField string) {
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, err := decode(body)
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.Key == "" || r.Time.IsZero() && !strings.Contains(string(r.Body), "0001-01-01") {
				t.Fatalf("record without key or time: %+v", r)
			}
			if !json.Valid(r.Body) {
				t.Fatalf("body is not JSON: %q", r.Body)
			}
			var again map[string]json.RawMessage
			if err := json.Unmarshal(r.Body, &again); err != nil {
				t.Fatalf("body is not an object: %v", err)
			}
			var key string
			if err := json.Unmarshal(again[keyField], &key); err != nil || key != r.Key {
				t.Fatalf("body key %q, record key %q", again[keyField], r.Key)
			}
		}
	})
}
