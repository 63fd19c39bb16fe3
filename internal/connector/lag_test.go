package connector

import (
	"errors"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

// TestLagOfAQuietKeysetJobIsNotTheAgeOfItsLastChange: a G-REX account whose newest change
// is three days old, polled successfully a second ago, is caught up, not three days behind
// (which would page someone for an account that simply has no news). A failing keyset job
// falls behind from its last success; a time-window job trails its cursor.
func TestLagOfAQuietKeysetJobIsNotTheAgeOfItsLastChange(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	keyset := &pollers.Job{Dataset: &pollers.Dataset{Source: "grex", Name: "certificates", PageSize: 100}, Partition: pollers.Partition{ID: "fr1"}}
	window := &pollers.Job{Dataset: &pollers.Dataset{Source: "ingrid", Name: "daily", LookBack: time.Hour}, Partition: pollers.Partition{ID: "c1"}}
	s := newJobStats()
	old := pollers.PollResult{Cursor: pollers.Cursor{Mark: now.Add(-72 * time.Hour)}}
	if got := s.lag(keyset, old, nil, now, time.Second); got != time.Second {
		t.Errorf("quiet keyset job caught up a second ago: lag %s, want 1s", got)
	}
	if got := s.lag(keyset, old, errors.New("503"), now.Add(10*time.Minute), time.Second); got != 10*time.Minute+time.Second {
		t.Errorf("keyset job failing since its last success: lag %s, want 10m1s", got)
	}
	fresh := newJobStats()
	if got := fresh.lag(keyset, old, errors.New("503"), now, time.Second); got != 72*time.Hour {
		t.Errorf("keyset job that never succeeded: lag %s, want its cursor's age 72h", got)
	}
	if got := s.lag(window, pollers.PollResult{Cursor: pollers.Cursor{Mark: now.Add(-5 * time.Minute)}}, nil, now, time.Second); got != 5*time.Minute {
		t.Errorf("time-window job: lag %s, want its cursor's age 5m", got)
	}
}
