package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestCheckStreamJudgesContentNotIDs: the chaos verdict itself. An entity revised A → B in
// the checked stream ends with an id that names A, unlike the fresh reference's id for B;
// that is correct and must not count as stale. A last revision with other content is stale,
// an absent entity lost, an id stored twice a duplicate.
func TestCheckStreamJudgesContentNotIDs(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	ctx := context.Background()
	// A short duplicate window, so that a replay can be stored again below.
	if _, err := srv.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "CHECK", Subjects: []string{"energy.>"}, Duplicates: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	put := func(subject, key, body string, prev, cur uint64) {
		m := nats.NewMsg(subject)
		id := publish.EventID("s", "d", "p", key, prev, cur)
		m.Header.Set("ce-id", id)
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Header.Set("ce-subject", key)
		m.Data = []byte(body)
		if _, err := srv.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	put("energy.s.d.p", "revised", `{"v":"A"}`, 0, 1)
	put("energy.s.d.p", "revised", `{"v":"B"}`, 1, 2)
	put("energy.s.d.p", "kept", `{"v":"K"}`, 0, 3)
	put("energy.s.d.p", "behind", `{"v":"old"}`, 0, 4)
	want := ref{body: map[string]string{
		"s.d.p | revised": `{"v":"B"}`,
		"s.d.p | kept":    `{"v":"K"}`,
		"s.d.p | behind":  `{"v":"new"}`,
		"s.d.p | absent":  `{"v":"X"}`,
	}}
	c := checkStream(t, srv.URL, "CHECK", want)
	if c.stale != 1 || c.lost != 1 || c.duplicates != 0 || c.events != 4 {
		t.Fatalf("check = %+v, want 1 stale (behind), 1 lost (absent), 0 duplicates, 4 events", c)
	}
	// The same revision stored twice (a replay outside the duplicate window) is a duplicate.
	time.Sleep(200 * time.Millisecond) // past the duplicate window
	put("energy.s.d.p", "kept", `{"v":"K"}`, 0, 3)
	if c := checkStream(t, srv.URL, "CHECK", want); c.duplicates != 1 {
		t.Fatalf("check = %+v, want the replayed id counted as a duplicate", c)
	}
}
