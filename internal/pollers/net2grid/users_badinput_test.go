package net2grid

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
)

// FuzzReadUserFile feeds arbitrary user files (e-mail,password lines) to the importer's
// parser: it never panics, every entry has a valid address and a unique id, and an error
// never repeats a password.
func FuzzReadUserFile(f *testing.F) {
	for _, s := range []string{
		"user-0001@example.test,pw1\nuser-0002@example.test,pw2\n",
		"# comment\n\n a@b.test\tpass word \n",
		"a@b.test,x\nA@B.TEST,y\n",
		"not-an-address,secret-pw\n",
		"a@b.test," + strings.Repeat("p", 70000) + "\n",
		"\xff\xfe@\x00.test,pw\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := ReadUserFile(strings.NewReader(s))
		if err != nil {
			for _, line := range strings.Split(s, "\n") {
				if _, pw, ok := strings.Cut(line, ","); ok && len(pw) >= 6 && strings.Contains(err.Error(), pw) {
					t.Fatalf("error %q repeats a password", err)
				}
			}
			return
		}
		ids := map[string]bool{}
		for _, e := range entries {
			if checkEmail(e.Email) != nil {
				t.Fatalf("entry with an invalid address %q", e.Email)
			}
			id := UserID(e.Email)
			if !IsUserID(id) || ids[id] {
				t.Fatalf("bad or repeated id %q", id)
			}
			ids[id] = true
		}
	})
}

// answerFetcher answers every path with one body.
type answerFetcher struct{ body []byte }

func (a answerFetcher) Get(context.Context, string, url.Values) ([]byte, error) { return a.body, nil }

// FuzzDiscover feeds arbitrary /installations answers to discover: it never panics, and
// every installation it keeps has an id and metrics that are safe in a request path.
func FuzzDiscover(f *testing.F) {
	for _, s := range []string{
		`{"status":"ok","data":{"installations":[{"id":"inst-1","primary":true,"metrics":["gas","electricity-offtake"]}]}}`,
		`{"status":"ok","data":{"installations":[{"id":12345,"metrics":["../../token"]}]}}`,
		`{"status":"ok","data":{"installations":[{"id":"a/b?c","metrics":[]}]}}`,
		`{"status":"error","message":"nope"}`,
		`{"status":"ok","data":{"installations":"x"}}`,
		`{"status":"ok","data":null}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, b []byte) {
		insts, err := discover(context.Background(), answerFetcher{b}, log)
		if err != nil {
			return
		}
		for _, in := range insts {
			if !installationIDRE.MatchString(in.ID) || strings.ContainsAny(in.ID, "/?#%&= ") {
				t.Fatalf("unsafe installation id %q kept", in.ID)
			}
			for _, m := range in.Metrics {
				if !metricRE.MatchString(m) || strings.ContainsAny(m, "/?#%") {
					t.Fatalf("unsafe metric %q kept", m)
				}
			}
		}
	})
}
