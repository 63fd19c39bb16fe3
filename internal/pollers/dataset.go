// Package pollers runs every dataset of every source through one generic loop:
// fetch page → decode → dedupe → publish → await acks → save cursor.
//
// A source package (ingrid, net2grid, grex) only declares Datasets and builds Jobs; it
// never writes its own loop.
package pollers

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// Record is one upstream entity as decoded from a page.
type Record struct {
	// Key identifies the entity within its job and stays the same across revisions
	// (a notice id, a gas day, an hour start, a certificate bundle id).
	Key string
	// Time is the record's own time (gas day start, hour start, modification time);
	// it becomes the event's ce-time. Keyset-paged datasets page on it.
	Time time.Time
	// Body is the upstream record as JSON; it is the event body and the input of the
	// content hash, so decoders must produce it deterministically (json.Marshal of a
	// decoded value, or the upstream bytes compacted).
	Body json.RawMessage
}

// Window is the slice of work one request covers.
type Window struct {
	// From and To bound the request in upstream time: [From, To).
	From, To time.Time
	// Skip and Top page inside a keyset query (Dataset.PageSize > 0): the request asks
	// for records with time >= From, ordered by time, skipping Skip of them.
	Skip, Top int
}

// Fetcher GETs a path under a source's API base. upstream.Client implements it with
// auth, quota, retries and size limits; any error means "page not usable, do not
// advance the cursor".
type Fetcher interface {
	Get(ctx context.Context, path string, query url.Values) ([]byte, error)
}

// Dataset declares one upstream dataset. Adding a dataset is adding a value of this type
// and a decoder with its test, nothing else.
type Dataset struct {
	// Source and Name form the subject tokens and event type: energy.<source>.<name>.<partition>.
	Source, Name string
	// Cadence is the normal interval between two polls of one job.
	Cadence time.Duration
	// LookBack is how far before the cursor every poll re-reads, because upstreams revise
	// data; only changed records are published again.
	LookBack time.Duration
	// DeepLookBack, if longer than LookBack, is re-read once every DeepEvery instead: for
	// late revisions that a short look-back polled every few minutes would miss (INGRID's
	// monthly finals of hourly data), without re-reading weeks of data every poll.
	DeepLookBack, DeepEvery time.Duration
	// Backfill is how far back a job without a cursor starts. Zero with PageSize > 0 means
	// a full load from the beginning.
	Backfill time.Duration
	// MaxSpan bounds the time span of one request (0: one request up to now).
	MaxSpan time.Duration
	// PageSize > 0 switches to keyset paging (G-REX): records must come ordered by Time,
	// and the loop follows with Window.Skip until a short page.
	PageSize int
	// KeepSeen keeps every seen-store entry of the dataset's jobs for ever. Without it, a
	// time-window dataset (PageSize == 0) forgets, after each successful poll, the entities
	// not read since before cursor − LookBack − SeenMargin: a record older than the look-back
	// is never requested again, so its entry could never match. An entity the upstream
	// returns whatever its time (reference data valid today but dated years ago) is re-read
	// every poll and so kept: a re-read entry is re-stamped well before it could expire.
	// Set KeepSeen when the upstream may return an old entity only now and then (absent
	// for longer than LookBack + SeenMargin), or it would be published again as "created".
	// Keyset datasets (PageSize > 0) re-read old records on a reload and are never pruned.
	// A backfill over a range older than the kept horizon publishes its records again.
	KeepSeen bool
	// Request builds the path and query of one request for job p and window w.
	Request func(p Partition, w Window) (path string, query url.Values)
	// Decode turns a page into records. It must reject a malformed page with an error
	// (the cursor then stays where it is) and may return zero records.
	Decode func(body []byte) ([]Record, error)
}

// prunesSeen reports whether the seen entries of the dataset's jobs expire (see KeepSeen).
func (d *Dataset) prunesSeen() bool { return d.PageSize == 0 && !d.KeepSeen }

// horizon is how far before the cursor any poll re-reads: the seen-store must remember
// at least that far back.
func (d *Dataset) horizon() time.Duration { return max(d.LookBack, d.DeepLookBack) }

// Partition is what a job polls a dataset for: a contract code, an end user, an account.
type Partition struct {
	// ID is the partition as it appears in the subject (escaped there) and in the job id.
	// It must not be a secret or personal data: NET2GRID uses a hashed user id.
	ID string
	// Params carry upstream values the request needs but that are not the ID
	// (e.g. the NET2GRID installation id, or the raw account number).
	Params map[string]string
}
