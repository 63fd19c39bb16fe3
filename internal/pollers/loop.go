package pollers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gridstream/gridstream/internal/publish"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ErrBadPage marks an upstream page that could not be used (undecodable, unordered,
// invalid keys): it is logged and counted, and the cursor stays where it was.
var ErrBadPage = errors.New("bad upstream page")

// ackTimeout bounds the wait for acks and cursor saves that run after the poll's context
// was cancelled (shutdown): in-flight publishes finish, then the cursor is saved.
const ackTimeout = 30 * time.Second

// Runner runs one poll of a job through the pipeline. It is safe for concurrent use by
// polls of different jobs; one job must not be polled twice at once (the scheduler and
// the leases see to that).
type Runner struct {
	Publisher *publish.Publisher
	Cursors   CursorStore
	Seen      publish.SeenStore
	// Prefix is the subject prefix (default "energy").
	Prefix string
	Log    *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// OnPage, if set, is told about every page (the demo prints a line per batch).
	OnPage func(job *Job, page PageResult)
}

// PageResult is what one page did.
type PageResult struct {
	Window                           Window
	Records, Published, Deduplicated int
	// Duplicates were dropped by JetStream itself (same Nats-Msg-Id inside the duplicate
	// window): a replay after a crash between ack and cursor save.
	Duplicates int
	Subject    string
	// PublishTook is the time from the first publish of the page to its last ack.
	PublishTook time.Duration
}

// PollResult sums a poll's pages.
type PollResult struct {
	Pages, Records, Published, Deduplicated, Duplicates int
	Cursor                                              Cursor
}

func (r *PollResult) add(p PageResult) {
	r.Pages++
	r.Records += p.Records
	r.Published += p.Published
	r.Deduplicated += p.Deduplicated
	r.Duplicates += p.Duplicates
}

// tracer is looked up per poll, not once at init: the global provider may be replaced
// (tests set up telemetry more than once), and a package-level tracer stays bound to the
// first provider ever set.
func tracer() trace.Tracer { return otel.Tracer("github.com/gridstream/gridstream/internal/pollers") }

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Poll fetches everything new for job since its cursor and publishes it. On error the
// cursor stays after the last fully acknowledged page.
func (r *Runner) Poll(ctx context.Context, job *Job) (res PollResult, err error) {
	id := job.ID()
	ctx, span := tracer().Start(ctx, "poll "+job.Dataset.Source+"/"+job.Dataset.Name, trace.WithAttributes(
		attribute.String("gridstream.job", id),
		attribute.String("gridstream.source", job.Dataset.Source),
		attribute.String("gridstream.dataset", job.Dataset.Name),
	))
	defer func() {
		span.SetAttributes(attribute.Int("gridstream.published", res.Published), attribute.Int("gridstream.pages", res.Pages))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	cur, err := r.Cursors.Load(ctx, id)
	if err != nil {
		return res, err
	}
	seen, err := r.Seen.Job(ctx, id)
	if err != nil {
		return res, err
	}
	p := &poll{r: r, job: job, id: id, seen: seen, cur: cur, res: &res}
	if job.Dataset.PageSize > 0 {
		err = p.keyset(ctx, r.now())
	} else {
		err = p.windows(ctx, r.now())
	}
	res.Cursor = p.cur
	if err == nil {
		// The poll is done and its cursor saved: forget what can never match again, and let
		// the store bound what it keeps. A failure here costs memory, not correctness.
		before := time.Time{}
		if job.Dataset.prunesSeen() && !p.cur.Mark.IsZero() {
			before = p.cur.Mark.Add(-job.Dataset.horizon() - SeenMargin)
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
		defer cancel()
		if perr := r.Seen.Prune(pctx, id, before); perr != nil && r.Log != nil {
			r.Log.Warn("seen-store prune failed", "job", id, "err", perr)
		}
	}
	return res, err
}

// SeenMargin is how long past a time-window dataset's look-back a seen entry is kept when
// its entity is no longer read: a record whose time moved a little, or that a request
// rounded to whole gas days still returns, is recognised. An entity read again is
// re-stamped when its stamp is SeenMargin/2 old (see seenTimes), so it never expires.
const SeenMargin = 24 * time.Hour

// seenTimes are the times a page stamps on seen entries (unix seconds): the record's time,
// but at least floor (now − the dataset's horizon: an entry lives at least horizon +
// SeenMargin after it was written, whatever its record's time); a remembered entity
// re-read with a stamp before touch is stamped again, so an entity the upstream returns
// every poll whatever its time (reference data) never expires. Datasets that are never
// pruned stamp the record time only and never touch.
type seenTimes struct{ floor, touch int64 }

func (p *poll) seenTimes() seenTimes {
	ds := p.job.Dataset
	if !ds.prunesSeen() {
		return seenTimes{floor: 0, touch: math.MinInt64}
	}
	floor := p.r.now().Add(-ds.horizon())
	return seenTimes{floor: floor.Unix(), touch: floor.Add(-SeenMargin / 2).Unix()}
}

// stamp is the time a seen entry of a record of time t is kept by.
func (st seenTimes) stamp(t time.Time) int64 { return max(t.Unix(), st.floor) }

type poll struct {
	r    *Runner
	job  *Job
	id   string
	seen *publish.Seen
	cur  Cursor
	res  *PollResult
}

// windows walks [cursor-LookBack, now) in requests of at most MaxSpan; from
// now-DeepLookBack, if that is earlier, when a deep re-read is due. The deep horizon
// counts from now, not from the cursor: a cursor left behind by a failed first poll
// must not send the re-read further back than a backfill goes.
func (p *poll) windows(ctx context.Context, now time.Time) error {
	ds := p.job.Dataset
	from := p.cur.Mark.Add(-ds.LookBack)
	deep := ds.DeepLookBack > ds.LookBack && (p.cur.Mark.IsZero() || now.Sub(p.cur.Deep) >= ds.DeepEvery)
	if d := now.Add(-ds.DeepLookBack); deep && !p.cur.Mark.IsZero() && d.Before(from) {
		from = d
	}
	if p.cur.Mark.IsZero() {
		from = now.Add(-ds.Backfill) // a backfill counts as a deep read
	}
	for from.Before(now) {
		to := now
		if ds.MaxSpan > 0 && from.Add(ds.MaxSpan).Before(now) {
			to = from.Add(ds.MaxSpan)
		}
		w := Window{From: from, To: to}
		if _, err := p.page(ctx, w); err != nil {
			return err
		}
		if to.After(p.cur.Mark) {
			if err := p.save(ctx, Cursor{Mark: to, Deep: p.cur.Deep}); err != nil {
				return err
			}
		}
		from = to
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if deep {
		// Only a deep re-read that read every window counts: one that failed is redone
		// whole at the next poll (its published pages are deduplicated then).
		return p.save(ctx, Cursor{Mark: p.cur.Mark, Deep: now})
	}
	return nil
}

// keysetOverlap is how many records before the skip point a keyset page re-reads.
const keysetOverlap = 2

// keyset follows records ordered by time: From is the last time seen, Skip the records
// at exactly that time already read.
func (p *poll) keyset(ctx context.Context, now time.Time) error {
	ds := p.job.Dataset
	from, skip := p.cur.Mark, p.cur.Skip
	switch {
	case p.cur.Mark.IsZero() && ds.Backfill > 0:
		from, skip = now.Add(-ds.Backfill), 0
	case !p.cur.Mark.IsZero() && ds.LookBack > 0:
		from, skip = p.cur.Mark.Add(-ds.LookBack), 0
	}
	// Re-read a few records before the skip point: if a record tied at `from` changes
	// between two pages it leaves the tie, the offsets shift down, and without the overlap
	// the record after the page boundary would be skipped. Re-read ones are deduplicated.
	overlap := min(keysetOverlap, ds.PageSize-1)
	for {
		req := max(0, skip-overlap)
		w := Window{From: from, To: now, Skip: req, Top: ds.PageSize}
		recs, err := p.page(ctx, w)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		last := recs[len(recs)-1].Time
		atLast := 0
		for i := len(recs) - 1; i >= 0 && recs[i].Time.Equal(last); i-- {
			atLast++
		}
		if last.Equal(from) {
			skip = req + len(recs)
		} else {
			from, skip = last, atLast
		}
		next := Cursor{Mark: from, Skip: skip}
		if next.Mark.After(p.cur.Mark) || (next.Mark.Equal(p.cur.Mark) && next.Skip > p.cur.Skip) {
			if err := p.save(ctx, next); err != nil {
				return err
			}
		}
		if len(recs) < ds.PageSize || ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (p *poll) save(ctx context.Context, c Cursor) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	if err := p.r.Cursors.Save(sctx, p.id, c); err != nil {
		return err
	}
	p.cur = c
	return nil
}

// page fetches, decodes, deduplicates and publishes one request, and returns once every
// event is acknowledged and remembered in the seen-store.
func (p *poll) page(ctx context.Context, w Window) ([]Record, error) {
	ds := p.job.Dataset
	ctx, span := tracer().Start(ctx, "page "+ds.Source+"/"+ds.Name)
	defer span.End()
	path, q := ds.Request(p.job.Partition, w)
	body, err := p.job.Fetcher.Get(ctx, path, q)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, fmt.Errorf("%s %s: fetch: %w", ds.Source, ds.Name, err)
	}
	recs, err := ds.Decode(body)
	if err != nil {
		span.SetStatus(codes.Error, "decode")
		return nil, fmt.Errorf("%s %s: decode %d bytes: %w: %w", ds.Source, ds.Name, len(body), ErrBadPage, err)
	}
	if err := p.check(recs, w); err != nil {
		return nil, err
	}
	subject := publish.Subject(p.prefix(), ds.Source, ds.Name, p.job.Partition.ID)
	pr := PageResult{Window: w, Records: len(recs), Subject: subject}
	// Decide first, publish second: a page with one unusable record publishes nothing.
	type pending struct {
		rec          *Record
		kh, prev, ch uint64
		known        bool
	}
	var todo []pending
	var touched []publish.SeenEntry
	st := p.seenTimes()
	for i := range recs {
		rec := &recs[i]
		kh, ch := publish.KeyHash(rec.Key), publish.ContentHash(rec.Body)
		e, known := p.seen.Get(kh)
		prev := e.ContentHash
		if known && prev == ch {
			pr.Deduplicated++
			if e.Time < st.touch { // re-read although old (reference data): keep it alive
				touched = append(touched, publish.SeenEntry{KeyHash: kh, ContentHash: ch, Time: st.stamp(rec.Time)})
			}
			continue
		}
		if !publish.ValidJSON(rec.Body) { // json.Valid's answer, faster
			return nil, fmt.Errorf("%s %s: record %d (%q): body is not JSON: %w", ds.Source, ds.Name, i, rec.Key, ErrBadPage)
		}
		if todo == nil { // the unchanged-record path above allocates nothing
			todo = make([]pending, 0, len(recs)-i)
		}
		todo = append(todo, pending{rec, kh, prev, ch, known})
	}
	var batch publish.Batch
	var pubErr error
	entries := make([]publish.SeenEntry, 0, len(todo)+len(touched))
	pubStart := time.Now()
	pctx := ctx
	if len(todo) > 0 {
		// A producer span per batch (OpenTelemetry messaging conventions); the events carry
		// its context in traceparent, so consumers continue this trace.
		var pspan trace.Span
		pctx, pspan = tracer().Start(ctx, "publish "+subject, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", subject),
			attribute.Int("messaging.batch.message_count", len(todo)),
		))
		defer pspan.End()
	}
	for _, t := range todo {
		change := publish.ChangeCreated
		if t.known {
			change = publish.ChangeUpdated
		}
		ev := publish.Event{
			Subject: subject, ID: publish.EventID(ds.Source, ds.Name, p.job.Partition.ID, t.rec.Key, t.prev, t.ch),
			Source: ds.Source, Dataset: ds.Name, Partition: p.job.Partition.ID,
			EntityKey: t.rec.Key, Time: t.rec.Time, Change: change, Body: t.rec.Body,
		}
		if pubErr = p.r.Publisher.Publish(pctx, &batch, &ev); pubErr != nil {
			break // await what is in flight, then fail the page
		}
		entries = append(entries, publish.SeenEntry{KeyHash: t.kh, ContentHash: t.ch, Time: st.stamp(t.rec.Time)})
	}
	// Await acks even when ctx is cancelled (shutdown): in-flight events finish.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackTimeout)
	defer cancel()
	ack, err := batch.Wait(wctx)
	if err == nil && pubErr != nil {
		err = fmt.Errorf("%s %s: %w", ds.Source, ds.Name, pubErr)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	if pubErr == nil {
		entries = append(entries, touched...)
	}
	if err := p.r.Seen.Commit(wctx, p.id, entries); err != nil {
		return nil, err
	}
	pr.Published, pr.Duplicates, pr.PublishTook = ack.Stored, ack.Duplicates, time.Since(pubStart)
	p.res.add(pr)
	span.SetAttributes(attribute.Int("gridstream.records", pr.Records), attribute.Int("gridstream.published", pr.Published))
	if p.r.OnPage != nil {
		p.r.OnPage(p.job, pr)
	}
	return recs, nil
}

func (p *poll) prefix() string {
	if p.r.Prefix == "" {
		return "energy"
	}
	return p.r.Prefix
}

// check rejects records that would corrupt the stream or the cursor.
func (p *poll) check(recs []Record, w Window) error {
	ds := p.job.Dataset
	for i := range recs {
		rec := &recs[i]
		// The key becomes the ce-subject header: control characters (CR, LF, NUL...) could
		// corrupt or forge headers, so a page carrying one is refused as malformed.
		if rec.Key == "" || !utf8.ValidString(rec.Key) || len(rec.Key) > 1024 || strings.ContainsFunc(rec.Key, unicode.IsControl) {
			return fmt.Errorf("%s %s: record %d: key empty, too long, not UTF-8 or with control characters: %w", ds.Source, ds.Name, i, ErrBadPage)
		}
		if ds.PageSize > 0 {
			if rec.Time.Before(w.From) || (i > 0 && rec.Time.Before(recs[i-1].Time)) {
				return fmt.Errorf("%s %s: record %d (%q) out of order: %w", ds.Source, ds.Name, i, rec.Key, ErrBadPage)
			}
		}
	}
	if ds.PageSize > 0 && len(recs) > ds.PageSize {
		return fmt.Errorf("%s %s: %d records in a page of %d: %w", ds.Source, ds.Name, len(recs), ds.PageSize, ErrBadPage)
	}
	return nil
}
