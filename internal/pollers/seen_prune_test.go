package pollers_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/ingrid"
	"github.com/gridstream/gridstream/internal/pollers/pollertest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
)

// seenValues counts the seen bucket's messages and bytes (one job per test).
func seenValues(t *testing.T, env *pollertest.Env) (msgs, bytes uint64) {
	t.Helper()
	st, err := env.JS.Stream(context.Background(), "KV_gridstream_seen")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs, info.State.Bytes
}

// TestTimeWindowSeenStoreStaysBounded polls a time-window job every hour for 30 simulated
// days, 3 new records an hour and a revision inside the look-back every 5 hours: the
// seen-store (memory and KV) stops growing at the look-back plus the margin, while every
// poll publishes exactly its new records and revisions, and a restarted replica publishes
// nothing on its first re-poll.
func TestTimeWindowSeenStoreStaysBounded(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 0)
	env.Seen.CompactValues = 16
	ctx := context.Background()
	const perHour, hours = 3, 30 * 24
	// Entries live LookBack + SeenMargin after their time, plus the prune walk's slack (6 h)
	// and the poll in progress.
	limit := perHour * int((job.Dataset.LookBack+pollers.SeenMargin+8*time.Hour)/time.Hour)
	var maxLen int
	var maxMsgs, maxBytes uint64
	events := 0
	for h := range hours {
		clk.Advance(time.Hour)
		now := clk.Now()
		for i := range perHour {
			api.set(fmt.Sprintf("r%04d-%d", h, i), now.Add(-time.Duration(10+20*i)*time.Minute), h)
		}
		want := perHour
		if h > 0 && h%5 == 0 { // revise a record of the previous hour: inside the look-back
			api.set(fmt.Sprintf("r%04d-%d", h-1, 0), now.Add(-70*time.Minute), -h)
			want++
		}
		res, err := env.Poll(ctx, job)
		if err != nil {
			t.Fatalf("hour %d: %v", h, err)
		}
		if res.Published != want {
			t.Fatalf("hour %d: published %d, want %d (%+v)", h, res.Published, want, res)
		}
		events += want
		s, err := env.Seen.Job(ctx, job.ID())
		if err != nil {
			t.Fatal(err)
		}
		msgs, bytes := seenValues(t, env)
		maxLen, maxMsgs, maxBytes = max(maxLen, s.Len()), max(maxMsgs, msgs), max(maxBytes, bytes)
	}
	if maxLen > limit {
		t.Errorf("seen set reached %d entries, want at most %d (%d records were published)", maxLen, limit, hours*perHour)
	}
	// A value holds one poll's 3 or 4 entries; compaction keeps the job's values below
	// CompactValues or twice the live set's bytes, whichever is more.
	if maxMsgs > 40 || maxBytes > 32<<10 {
		t.Errorf("seen bucket reached %d values, %d bytes", maxMsgs, maxBytes)
	}
	t.Logf("%d records published; seen set at most %d entries; bucket at most %d values, %d bytes", events, maxLen, maxMsgs, maxBytes)
	if got := assertNoDuplicateIDs(t, env); len(got) != events {
		t.Fatalf("stream holds %d ids, want %d", len(got), events)
	}
	// A restarted replica loads the compacted bucket and re-polls without publishing.
	restarted := pollertest.New(t, pollertest.WithServer(env.NATS), pollertest.WithNow(clk.Now))
	clk.Advance(time.Minute)
	res, err := restarted.Poll(ctx, job)
	if err != nil || res.Published != 0 {
		t.Fatalf("re-poll after restart published %d (%v), want 0", res.Published, err)
	}
	if s, _ := restarted.Seen.Job(ctx, job.ID()); s.Len() > limit {
		t.Errorf("reloaded seen set holds %d entries, want at most %d", s.Len(), limit)
	}
}

// TestKeysetSeenStoreIsNeverPruned: a keyset job (G-REX) re-reads old records on a reload
// of the cursor, so its entries are kept whatever their age.
func TestKeysetSeenStoreIsNeverPruned(t *testing.T) {
	t.Parallel()
	api, env, job, clk := setup(t, 3)
	ctx := context.Background()
	for i := range 10 {
		api.set(fmt.Sprintf("r%02d", i), t0.Add(-time.Duration(i+1)*time.Hour), i)
	}
	if _, err := env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	clk.Advance(30 * 24 * time.Hour)
	if _, err := env.Poll(ctx, job); err != nil {
		t.Fatal(err)
	}
	if s, _ := env.Seen.Job(ctx, job.ID()); s.Len() != 10 {
		t.Fatalf("keyset seen set holds %d entries after a month, want 10", s.Len())
	}
}

// TestReferenceEntityWithOldTimeIsNeverRepublished polls INGRID's services (reference
// data: every poll returns every service, dated by its last revision, days or years old)
// against the sandbox every 6 hours for 30 days: each revision is published once, and an
// unchanged service is never published again, however old its time.
func TestReferenceEntityWithOldTimeIsNeverRepublished(t *testing.T) {
	t.Parallel()
	clock := quota.NewFakeClock(time.Date(2024, 4, 1, 10, 0, 0, 0, time.UTC))
	fake := sandbox.NewINGRID(sandbox.INGRIDOptions{Clock: clock})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	src, err := ingrid.New(ingrid.Options{
		APIBase: srv.URL, TokenURL: srv.URL + sandbox.INGRIDTokenPath,
		ClientID: sandbox.INGRIDDemoClientID, ClientSecret: secret.New(sandbox.INGRIDDemoClientSecret),
		Contracts: []string{sandbox.INGRIDDemoContract}, Datasets: []string{ingrid.Services.Name}, Clock: clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := src.Jobs(context.Background())
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v, %v", jobs, err)
	}
	job := jobs[0]
	env := pollertest.New(t, pollertest.WithNow(clock.Now))
	ctx := context.Background()
	oldest := clock.Now()
	for range 30 * 4 {
		res, err := env.Poll(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range env.Events(t)[len(env.Events(t))-res.Published:] {
			if tm, _ := time.Parse(time.RFC3339, e.Header.Get(publish.HeaderTime)); tm.Before(oldest) {
				oldest = tm
			}
		}
		clock.Advance(6 * time.Hour)
	}
	seen := map[string]bool{} // entity + body
	created := map[string]int{}
	for _, e := range env.Events(t) {
		key := e.Header.Get(publish.HeaderSubject)
		if seen[key+string(e.Data)] {
			t.Errorf("service %s published again unchanged: %s", key, e.Data)
		}
		seen[key+string(e.Data)] = true
		if e.Header.Get(publish.HeaderChange) == publish.ChangeCreated {
			created[key]++
		}
	}
	if len(created) == 0 {
		t.Fatal("no service published")
	}
	for key, n := range created {
		if n != 1 {
			t.Errorf("service %s published as created %d times", key, n)
		}
	}
	if age := clock.Now().Sub(oldest); age < ingrid.Services.LookBack+pollers.SeenMargin {
		t.Errorf("the oldest service time is only %v old: the test does not cover old times", age)
	}
	t.Logf("%d events for %d services; oldest record time %s", len(env.Events(t)), len(created), oldest.Format(time.RFC3339))
}
