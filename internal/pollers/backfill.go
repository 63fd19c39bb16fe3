package pollers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gridstream/gridstream/internal/quota"
)

// ErrBadRange is returned by Runner.Backfill for an empty or inverted time range.
var ErrBadRange = errors.New("backfill: bad time range")

// BackfillOptions describe one historical load of a job.
type BackfillOptions struct {
	// From and To bound the load in upstream time: [From, To).
	From, To time.Time
	// Span bounds the time span of one request; Dataset.MaxSpan when zero, and the whole
	// range in one request when both are zero. Keyset datasets page instead.
	Span time.Duration
	// Restart ignores a saved backfill cursor for the same range and starts at From.
	Restart bool
	// Usage, if set, reports the upstream quota (quota.Limiter.Usage) for the ETA.
	Usage func() []quota.WindowUsage
	// OnProgress, if set, is told once before the first request and after every window
	// (keyset datasets: every page).
	OnProgress func(BackfillProgress)
}

// BackfillProgress is where a backfill stands.
type BackfillProgress struct {
	// Done and Total count windows (requests of at most Span). Keyset datasets do not
	// know their page count beforehand: Total is then 0 and Done counts pages.
	Done, Total int
	// Covered is the fraction of [From, To) loaded, in [0, 1].
	Covered float64
	// Mark is the backfill cursor: everything in [From, Mark) is published.
	Mark time.Time
	// Records, Published and Deduplicated sum the pages of this run.
	Records, Published, Deduplicated int
	// Resumed is true when the run started from a saved backfill cursor.
	Resumed bool
	// QuotaETA is the time the remaining requests need at the upstream's quota (requests
	// left ÷ the limiter's rate, after what is left in each window now); ETA is the larger
	// of it and the pace observed so far. Both are -1 while unknown.
	QuotaETA, ETA time.Duration
}

// BackfillResult is what a backfill did.
type BackfillResult struct {
	PollResult
	// Windows is the number of windows (keyset: pages) fetched by this run; Progress is
	// the last progress reported.
	Windows  int
	Progress BackfillProgress
}

// BackfillKey is the cursor key of a backfill of job jobID over [from, to) in the cursor
// store: separate from the live cursor (the key jobID), so a backfill never moves the live
// cursor, and per range, so an interrupted backfill resumes and a different range starts
// fresh.
func BackfillKey(jobID string, from, to time.Time) string {
	const f = "20060102T150405.000000000Z"
	return jobID + ".backfill." + from.UTC().Format(f) + "-" + to.UTC().Format(f)
}

// Backfill loads the job's records over [o.From, o.To) through the same pipeline as a
// poll (fetch → decode → dedupe against the job's seen-store → publish → await acks), in
// windows of at most o.Span, and saves its own cursor (BackfillKey) after each window is
// acknowledged. The job's live cursor is neither read nor written. Requests go through
// the job's Fetcher, so they spend and obey the upstream's quota like every poll. A
// backfill must not run twice at once for the same job and range.
func (r *Runner) Backfill(ctx context.Context, job *Job, o BackfillOptions) (BackfillResult, error) {
	var res BackfillResult
	if o.From.IsZero() || o.To.IsZero() || !o.From.Before(o.To) {
		return res, fmt.Errorf("%w: from %s to %s", ErrBadRange, o.From.Format(time.RFC3339), o.To.Format(time.RFC3339))
	}
	id := job.ID()
	key := BackfillKey(id, o.From, o.To)
	var cur Cursor
	if !o.Restart {
		var err error
		if cur, err = r.Cursors.Load(ctx, key); err != nil {
			return res, err
		}
	}
	seen, err := r.Seen.Job(ctx, id)
	if err != nil {
		return res, err
	}
	b := &backfill{
		poll:    poll{r: r, job: job, id: id, seen: seen, cur: cur, res: &res.PollResult},
		key:     key,
		o:       o,
		started: r.now(),
	}
	b.progress.Resumed = !cur.Mark.IsZero()
	if job.Dataset.PageSize > 0 {
		err = b.keyset(ctx)
	} else {
		err = b.windows(ctx)
	}
	res.Cursor = b.cur
	res.Windows = b.fetched
	res.Progress = b.progress
	return res, err
}

type backfill struct {
	poll
	key      string
	o        BackfillOptions
	started  time.Time
	fetched  int // windows or pages fetched by this run
	progress BackfillProgress
}

func (b *backfill) span() time.Duration {
	if b.o.Span > 0 {
		return b.o.Span
	}
	if s := b.job.Dataset.MaxSpan; s > 0 {
		return s
	}
	return b.o.To.Sub(b.o.From)
}

// windowsIn counts the windows of length span that cover [from, to).
func windowsIn(from, to time.Time, span time.Duration) int {
	if !to.After(from) {
		return 0
	}
	d := to.Sub(from)
	return int((d + span - 1) / span)
}

// windows walks [From, To) in windows of span, starting at the saved cursor.
func (b *backfill) windows(ctx context.Context) error {
	span := b.span()
	from := b.o.From
	if b.cur.Mark.After(from) {
		from = b.cur.Mark
	}
	if from.After(b.o.To) {
		from = b.o.To
	}
	total := windowsIn(b.o.From, b.o.To, span)
	b.report(windowsIn(b.o.From, from, span), total, from)
	for from.Before(b.o.To) {
		if err := ctx.Err(); err != nil {
			return err
		}
		to := from.Add(span)
		if to.After(b.o.To) {
			to = b.o.To
		}
		if _, err := b.page(ctx, Window{From: from, To: to}); err != nil {
			return err
		}
		b.fetched++
		if err := b.save(ctx, Cursor{Mark: to}); err != nil {
			return err
		}
		from = to
		b.report(windowsIn(b.o.From, from, span), total, from)
	}
	return nil
}

// keyset follows records ordered by time from the cursor (or From) until a short page
// or a record at or past To.
func (b *backfill) keyset(ctx context.Context) error {
	ds := b.job.Dataset
	from, skip := b.o.From, 0
	if b.cur.Mark.After(from) || (b.cur.Mark.Equal(from) && b.cur.Skip > 0) {
		from, skip = b.cur.Mark, b.cur.Skip
	}
	if !from.Before(b.o.To) {
		b.report(0, 0, b.o.To) // complete already
		return nil
	}
	b.report(0, 0, from)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, err := b.page(ctx, Window{From: from, To: b.o.To, Skip: skip, Top: ds.PageSize})
		if err != nil {
			return err
		}
		b.fetched++
		if len(recs) == 0 {
			b.report(b.fetched, 0, b.o.To)
			return b.save(ctx, Cursor{Mark: b.o.To})
		}
		last := recs[len(recs)-1].Time
		atLast := 0
		for i := len(recs) - 1; i >= 0 && recs[i].Time.Equal(last); i-- {
			atLast++
		}
		if last.Equal(from) {
			skip += len(recs)
		} else {
			from, skip = last, atLast
		}
		done := len(recs) < ds.PageSize || !from.Before(b.o.To)
		next := Cursor{Mark: from, Skip: skip}
		if done {
			next = Cursor{Mark: b.o.To}
		}
		if err := b.save(ctx, next); err != nil {
			return err
		}
		b.report(b.fetched, 0, next.Mark)
		if done {
			return nil
		}
	}
}

func (b *backfill) save(ctx context.Context, c Cursor) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := b.r.Cursors.Save(sctx, b.key, c); err != nil {
		return fmt.Errorf("backfill %s: %w", b.id, err)
	}
	b.cur = c
	return nil
}

// report updates the progress (done of total windows, the range covered up to mark) and
// tells OnProgress.
func (b *backfill) report(done, total int, mark time.Time) {
	p := &b.progress
	p.Done, p.Total, p.Mark = done, total, mark
	whole := b.o.To.Sub(b.o.From)
	p.Covered = min(max(float64(mark.Sub(b.o.From))/float64(whole), 0), 1)
	p.Records, p.Published, p.Deduplicated = b.res.Records, b.res.Published, b.res.Deduplicated

	// Requests left: the windows left, or for keyset datasets the pages so far scaled
	// to the range left. At least one request per window (some sources make more).
	left := -1
	switch {
	case total > 0:
		left = total - done
	case p.Covered >= 1:
		left = 0
	case p.Covered > 0 && b.fetched > 0:
		left = int(float64(b.fetched)*(1-p.Covered)/p.Covered + 0.5)
	}
	p.QuotaETA, p.ETA = -1, -1
	if left >= 0 {
		if b.o.Usage != nil {
			p.QuotaETA = QuotaETA(left, b.o.Usage())
		} else {
			p.QuotaETA = 0
		}
		p.ETA = p.QuotaETA
		if b.fetched > 0 {
			pace := b.r.now().Sub(b.started) / time.Duration(b.fetched)
			p.ETA = max(p.ETA, pace*time.Duration(left))
		}
	}
	if b.o.OnProgress != nil {
		b.o.OnProgress(*p)
	}
}

// QuotaETA is how long n more requests take at most under the given quota windows: what
// is left in each window now goes at once, the rest at the window's rate (Limit per Per).
// The slowest window decides.
func QuotaETA(n int, usage []quota.WindowUsage) time.Duration {
	var eta time.Duration
	for _, u := range usage {
		over := n - u.Remaining
		if over <= 0 || u.Limit <= 0 {
			continue
		}
		eta = max(eta, time.Duration(float64(over)/float64(u.Limit)*float64(u.Per)))
	}
	return eta
}
