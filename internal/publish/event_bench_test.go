package publish

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// validJSONCases are inputs on every branch of ValidJSON.
var validJSONCases = []string{
	``, ` `, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `1e`, `1e+`, `1E-7`, `12.5e10`, `-.5`, `.5`,
	`true`, `truex`, `tru`, `false`, `null`, `nul`, `"a"`, `"a`, `"\"\\\/\b\f\n\r\t"`,
	`"\u00e9"`, `"\u00g9"`, `"\u00e"`, `"\x"`, "\"\x01\"", "\"\xff\xfe\"", `"é"`,
	`{}`, `[]`, `{ }`, `[ ]`, `{"a":1}`, `{"a" : [1, 2, {"b": null}] }`, `{"a":1,}`, `[1,]`,
	`{"a"}`, `{"a":}`, `{1:2}`, `[1 2]`, `{"a":1 "b":2}`, `[`, `]`, `{`, `}`, `[}`, `{]`,
	" \t\r\n[1]\n", `[1]x`, `[1][2]`, `"a" "b"`, `{"a":{"b":{"c":[[[]]]}}}`,
	strings.Repeat("[", 64) + strings.Repeat("]", 64),
	strings.Repeat("[", 65) + strings.Repeat("]", 65),
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70),
}

func TestValidJSONAnswersAsJSONValid(t *testing.T) {
	t.Parallel()
	for i, in := range validJSONCases {
		if got, want := ValidJSON([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("case %d %.40q: ValidJSON %v, json.Valid %v", i, in, got, want)
		}
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, in := range validJSONCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := ValidJSON(b), json.Valid(b); got != want {
			t.Fatalf("%q: ValidJSON %v, json.Valid %v", b, got, want)
		}
	})
}

func TestEventIDSeparatesRevisions(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 300) // past the stack buffer
	for _, tc := range []struct{ name, s, d, p, k string }{
		{"short", "ingrid", "operational-notices", "abc123", "N-1"},
		{"empty", "", "", "", ""},
		{"long key", "net2grid", "readings", "u-42", long},
		{"unicode", "grex", "certificates", "FR0001", "é/ü"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := uint64(1), uint64(2)
			first := EventID(tc.s, tc.d, tc.p, tc.k, 0, a)
			if first != EventID(tc.s, tc.d, tc.p, tc.k, 0, a) || len(first) != 32 {
				t.Fatalf("id not deterministic: %s", first)
			}
			// A → B → A: three revisions, three ids.
			ids := map[string]bool{first: true, EventID(tc.s, tc.d, tc.p, tc.k, a, b): true, EventID(tc.s, tc.d, tc.p, tc.k, b, a): true}
			if len(ids) != 3 {
				t.Fatalf("A→B→A revisions share an id: %v", ids)
			}
			// Parts cannot run into each other.
			if EventID(tc.s+"x", tc.d, tc.p, tc.k, 0, a) == EventID(tc.s, "x"+tc.d, tc.p, tc.k, 0, a) {
				t.Fatal("ambiguous parts")
			}
		})
	}
}

func BenchmarkValidJSON(b *testing.B) {
	body := []byte(`{"installation_id":"inst-1","metric":"electricity-offtake","interval":"quarters","start":"2025-03-10T12:00:00Z","end":"2025-03-10T12:15:00Z","value":123,"unit":"Wh","pad":"` + strings.Repeat("x", 300) + `"}`)
	for _, bc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"ValidJSON", ValidJSON}, {"json.Valid", json.Valid}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !bc.valid(body) {
					b.Fatal("invalid")
				}
			}
		})
	}
}

func BenchmarkEventMsg(b *testing.B) {
	ctx := context.Background()
	body := []byte(`{"v":1}`)
	b.ReportAllocs()
	for b.Loop() {
		e := Event{
			Subject: "energy.net2grid.readings.u-42", ID: EventID("net2grid", "readings", "u-42", "inst/metric/2025-03-10T12:00:00Z", 0, 42),
			Source: "net2grid", Dataset: "readings", Partition: "u-42", EntityKey: "inst/metric/2025-03-10T12:00:00Z",
			Time: time.Unix(1741608000, 0), Change: ChangeCreated, Body: body,
		}
		_ = e.Msg(ctx)
	}
}
