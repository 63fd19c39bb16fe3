package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
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

// eventIDv1 is EventID as first written (streamed into sha256.New): ids are part of the
// wire format (Nats-Msg-Id), so the faster version must give the same ids.
func eventIDv1(source, dataset, partition, key string, contentHash uint64) string {
	h := sha256.New()
	for _, part := range []string{source, dataset, partition, key} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	var ch [8]byte
	for i := range ch {
		ch[i] = byte(contentHash >> (56 - 8*i))
	}
	h.Write(ch[:])
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

func TestEventIDIsUnchangedByTheFastPath(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("k", 300) // past the stack buffer
	for _, tc := range []struct{ name, s, d, p, k string }{
		{"short", "ingrid", "operational-notices", "abc123", "N-1"},
		{"empty", "", "", "", ""},
		{"long key", "net2grid", "readings", "u-42", long},
		{"unicode", "grex", "certificates", "FR0001", "é/ü"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, ch := range []uint64{0, 1, 1<<64 - 1} {
				if got, want := EventID(tc.s, tc.d, tc.p, tc.k, ch), eventIDv1(tc.s, tc.d, tc.p, tc.k, ch); got != want {
					t.Fatalf("EventID %s, first version %s", got, want)
				}
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
			Subject: "energy.net2grid.readings.u-42", ID: EventID("net2grid", "readings", "u-42", "inst/metric/2025-03-10T12:00:00Z", 42),
			Source: "net2grid", Dataset: "readings", Partition: "u-42", EntityKey: "inst/metric/2025-03-10T12:00:00Z",
			Time: time.Unix(1741608000, 0), Change: ChangeCreated, Body: body,
		}
		_ = e.Msg(ctx)
	}
}
