package telemetry

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestBoardIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	b := NewBoard()
	b.AddQuotaProvider(func() []QuotaStatus {
		_ = b.Jobs() // a provider may read the board itself without deadlocking
		return []QuotaStatus{{Upstream: "grex", Window: "1h", Used: 1, Limit: 500}}
	})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				id := fmt.Sprintf("net2grid/readings/u-%d-%d", w, i)
				b.UpdateJob(JobStatus{ID: id, Source: "net2grid", Dataset: "readings", State: JobStateOK})
				b.SetReady(fmt.Sprintf("c%d", w), nil)
				_ = b.Jobs()
				_ = b.Quotas()
				_ = b.Readiness()
				if i%2 == 0 {
					b.RemoveJob(id)
				}
			}
		}()
	}
	wg.Wait()
	if got := len(b.Jobs()); got != 400 {
		t.Errorf("jobs = %d, want 400", got)
	}
}

func TestBoardListsFailingJobsFirst(t *testing.T) {
	t.Parallel()
	b := NewBoard()
	b.UpdateJob(JobStatus{ID: "a", Source: "ingrid", Dataset: "d", Partition: "1", State: JobStateOK})
	b.UpdateJob(JobStatus{ID: "b", Source: "ingrid", Dataset: "d", Partition: "2", State: JobStateOK, LastError: "503"})
	b.UpdateJob(JobStatus{ID: "c", Source: "grex", Dataset: "d", Partition: "3", State: JobStateBlocked})
	b.UpdateJob(JobStatus{ID: "a", Source: "ingrid", Dataset: "d", Partition: "1", State: JobStateIdle, LastPoll: time.Now()})
	var ids []string
	for _, j := range b.Jobs() {
		ids = append(ids, j.ID)
	}
	if fmt.Sprint(ids) != "[c b a]" {
		t.Errorf("order = %v, want [c b a]", ids)
	}
}

func TestTokenExpiryPrefersRefreshToken(t *testing.T) {
	t.Parallel()
	access, refresh := time.Unix(100, 0), time.Unix(200, 0)
	if got := (TokenStatus{AccessExpiry: access, RefreshExpiry: refresh}).Expiry(); !got.Equal(refresh) {
		t.Errorf("Expiry = %v, want refresh expiry", got)
	}
	if got := (TokenStatus{AccessExpiry: access}).Expiry(); !got.Equal(access) {
		t.Errorf("Expiry = %v, want access expiry", got)
	}
}

func TestReadinessSortedByName(t *testing.T) {
	t.Parallel()
	b := NewBoard()
	b.SetReady("stream", nil)
	b.SetReady("nats", errors.New("starting"))
	got := b.Readiness()
	if len(got) != 2 || got[0].Name != "nats" || got[0].Err == nil || got[1].Name != "stream" {
		t.Errorf("Readiness = %v", got)
	}
}

func TestRedactEmails(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want string }{
		{name: "plain", in: "u-42", want: "u-42"},
		{name: "email", in: "Jane@Example.com", want: RedactEmails("jane@example.com")},
		{name: "inside path", in: "net2grid/readings/jane@example.com", want: "net2grid/readings/" + RedactEmails("jane@example.com")},
		{name: "inside error", in: `login for "jane@example.com" failed`, want: `login for "` + RedactEmails("jane@example.com") + `" failed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := RedactEmails(tc.in); got != tc.want {
				t.Errorf("RedactEmails(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if got := RedactEmails("jane@example.com"); len(got) != 14 || got[:2] != "h-" {
		t.Errorf("pseudonym %q, want h- and 12 hex digits", got)
	}
}
