package ingrid_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/ingrid"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/upstream"
)

// badUpstream serves the INGRID sandbox, except that data answers go through bad when set.
type badUpstream struct {
	mu   sync.Mutex
	fake *sandbox.INGRID
	bad  func(w http.ResponseWriter, good []byte)
}

func (b *badUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	bad := b.bad
	b.mu.Unlock()
	if bad == nil || r.URL.Path == sandbox.INGRIDTokenPath {
		b.fake.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	b.fake.ServeHTTP(rec, r)
	bad(w, rec.Body.Bytes())
}

func (b *badUpstream) set(f func(w http.ResponseWriter, good []byte)) {
	b.mu.Lock()
	b.bad = f
	b.mu.Unlock()
}

func writeBody(ct string, body []byte) func(w http.ResponseWriter, _ []byte) {
	return func(w http.ResponseWriter, _ []byte) {
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		_, _ = w.Write(body)
	}
}

// editRecords rewrites the first record of the real page with edit.
func editRecords(edit func(rec map[string]any)) func(w http.ResponseWriter, good []byte) {
	return func(w http.ResponseWriter, good []byte) {
		var page map[string]any
		if err := json.Unmarshal(good, &page); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if recs, _ := page["data"].([]any); len(recs) > 0 {
			edit(recs[0].(map[string]any))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}
}

// TestBadUpstreamInputIsRejectedWithoutAdvancingCursorOrPublishing drives bad answers
// through the real pipeline (upstream client, INGRID decoder, publish, KV cursor): each is a
// clear error of its kind, the cursor stays, nothing is published, nothing panics.
func TestBadUpstreamInputIsRejectedWithoutAdvancingCursorOrPublishing(t *testing.T) {
	const maxBody = 1 << 20
	up := &badUpstream{fake: sandbox.NewINGRID(sandbox.INGRIDOptions{})}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	src, err := ingrid.New(ingrid.Options{
		APIBase: srv.URL, TokenURL: srv.URL + sandbox.INGRIDTokenPath,
		ClientID: sandbox.INGRIDDemoClientID, ClientSecret: secret.New(sandbox.INGRIDDemoClientSecret),
		Contracts: []string{sandbox.INGRIDDemoContract}, Datasets: []string{"operational-notices"},
		Timeout: 5 * time.Second, MaxBody: maxBody,
	})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := src.Jobs(context.Background())
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs: %d, %v", len(jobs), err)
	}
	job := jobs[0]
	env := pollertest.New(t)
	ctx := context.Background()
	if _, err := env.Poll(ctx, job); err != nil {
		t.Fatalf("good first poll: %v", err)
	}
	before, err := env.Cursors.Load(ctx, job.ID())
	if err != nil || before.Mark.IsZero() {
		t.Fatalf("cursor after a good poll: %+v %v", before, err)
	}
	events := len(env.Events(t))

	deep := bytes.Repeat([]byte("["), 200_000)
	cases := []struct {
		name string
		bad  func(w http.ResponseWriter, good []byte)
		want error // the sentinel the error wraps
	}{
		{"oversized body with Content-Length", writeBody("application/json", append(append([]byte(`{"data":["`), bytes.Repeat([]byte("x"), maxBody)...), `"]}`...)), upstream.ErrBodyTooLarge},
		{"oversized chunked body", func(w http.ResponseWriter, _ []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"data":["`)
			for range 64 {
				_, _ = w.Write(bytes.Repeat([]byte("y"), maxBody/32))
				w.(http.Flusher).Flush()
			}
			_, _ = io.WriteString(w, `"]}`)
		}, upstream.ErrBodyTooLarge},
		{"deep JSON", writeBody("application/json", deep), upstream.ErrNotJSON},
		{"deep JSON inside a record", writeBody("application/json", []byte(`{"data":[{"noticeId":"N","updatedAt":"2024-01-01T00:00:00Z","x":`+strings.Repeat("[", 20_000)+strings.Repeat("]", 20_000)+`}]}`)), upstream.ErrNotJSON},
		{"HTML instead of JSON", writeBody("text/html", []byte("<!DOCTYPE html><html><body>Maintenance</body></html>")), upstream.ErrNotJSON},
		{"HTML labelled JSON", writeBody("application/json", []byte("<html><body>Bad gateway</body></html>")), upstream.ErrNotJSON},
		{"empty body", writeBody("application/json", nil), upstream.ErrNotJSON},
		{"empty object", writeBody("application/json", []byte(`{}`)), pollers.ErrBadPage},
		{"data is a string", writeBody("application/json", []byte(`{"data":"none"}`)), pollers.ErrBadPage},
		{"record is a number", writeBody("application/json", []byte(`{"data":[42]}`)), pollers.ErrBadPage},
		{"id is a number", editRecords(func(r map[string]any) { r["noticeId"] = 12345 }), pollers.ErrBadPage},
		{"time is not a date", editRecords(func(r map[string]any) { r["updatedAt"] = "yesterday"; r["publishedAt"] = true }), pollers.ErrBadPage},
		{"truncated JSON", func(w http.ResponseWriter, good []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(good[:len(good)/2])
		}, upstream.ErrNotJSON},
		{"trailing garbage", func(w http.ResponseWriter, good []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(append(append([]byte{}, good...), "{}"...))
		}, upstream.ErrNotJSON},
		{"invalid UTF-8 in a key", func(w http.ResponseWriter, _ []byte) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{\"data\":[{\"noticeId\":\"N-\xff\xfe\",\"updatedAt\":\"2099-01-01T00:00:00Z\"}]}"))
		}, upstream.ErrNotJSON}, // JSON is UTF-8 (RFC 8259): decoding would turn both bytes into U+FFFD and merge distinct keys
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up.set(tc.bad)
			defer up.set(nil)
			_, err := env.Poll(ctx, job)
			if err == nil {
				t.Fatal("poll accepted the bad answer")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q does not wrap %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "operational-notices") {
				t.Errorf("error %q does not name the dataset", err)
			}
			if len(err.Error()) > 2048 {
				t.Errorf("error is %d bytes long: an upstream body is echoed", len(err.Error()))
			}
			after, _ := env.Cursors.Load(ctx, job.ID())
			if !after.Mark.Equal(before.Mark) || after.Skip != before.Skip {
				t.Errorf("cursor moved from %+v to %+v", before, after)
			}
			if n := len(env.Events(t)); n != events {
				t.Errorf("%d events published from a bad page", n-events)
			}
		})
	}
}

// TestUpstreamKeyCannotInjectEventHeaders feeds record keys with CR/LF, NUL and subject
// wildcards: either the page is rejected, or every event's headers are exactly the ones
// gridstream sets, with the key intact in ce-subject and nothing added.
func TestUpstreamKeyCannotInjectEventHeaders(t *testing.T) {
	keys := []string{"N\r\nX-Evil: 1", "N\nNats-Msg-Id: fixed", "N\x00nul", "N.*.>", "N \t space"}
	for _, key := range keys {
		t.Run(strings.ToValidUTF8(key, "?"), func(t *testing.T) {
			t.Parallel()
			up := &badUpstream{fake: sandbox.NewINGRID(sandbox.INGRIDOptions{})}
			srv := httptest.NewServer(up)
			t.Cleanup(srv.Close)
			src, err := ingrid.New(ingrid.Options{
				APIBase: srv.URL, TokenURL: srv.URL + sandbox.INGRIDTokenPath,
				ClientID: sandbox.INGRIDDemoClientID, ClientSecret: secret.New(sandbox.INGRIDDemoClientSecret),
				Contracts: []string{sandbox.INGRIDDemoContract}, Datasets: []string{"operational-notices"},
			})
			if err != nil {
				t.Fatal(err)
			}
			jobs, err := src.Jobs(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			up.set(editRecords(func(r map[string]any) { r["noticeId"] = key }))
			env := pollertest.New(t)
			if _, err := env.Poll(context.Background(), jobs[0]); err != nil {
				if !errors.Is(err, pollers.ErrBadPage) {
					t.Fatalf("rejected, but not as a bad page: %v", err)
				}
				return
			}
			found := false
			for _, e := range env.Events(t) {
				if e.Header.Get("X-Evil") != "" {
					t.Errorf("header injected: %v", e.Header)
				}
				if len(e.Header["Nats-Msg-Id"]) != 1 || e.Header.Get("Nats-Msg-Id") == "fixed" {
					t.Errorf("Nats-Msg-Id injected: %v", e.Header["Nats-Msg-Id"])
				}
				if cs := e.Header.Get("ce-subject"); strings.HasPrefix(cs, "N") && cs != "" && !strings.HasPrefix(cs, "ON-") {
					found = true
					if strings.ContainsAny(cs, "\r\n\x00") {
						t.Errorf("ce-subject %q carries a control character into the header", cs)
					}
				}
				if strings.ContainsAny(e.Subject, " \t\r\n*>") {
					t.Errorf("unescaped subject %q", e.Subject)
				}
			}
			if !found {
				t.Errorf("no event carries the key %q in ce-subject", key)
			}
		})
	}
}
