package connector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/ingrid"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/quota"
)

// ErrNoBackfillJob is returned by RunBackfill when no configured job matches the source,
// dataset and partition asked for; the message lists what would.
var ErrNoBackfillJob = errors.New("backfill: no matching job")

// BackfillOptions configure RunBackfill.
type BackfillOptions struct {
	// Config is the deployment's configuration; the source asked for is enabled for the
	// backfill (and the others disabled) whatever its GRIDSTREAM_*_ENABLED says.
	Config  config.Config
	Log     *slog.Logger
	Version string
	// Source, Dataset and Partition select the jobs; an empty Partition selects every
	// partition of the dataset (one after the other).
	Source, Dataset, Partition string
	// From, To, Span and Restart: see pollers.BackfillOptions.
	From, To time.Time
	Span     time.Duration
	Restart  bool
	// Progress, if set, gets a progress bar per job (stderr).
	Progress io.Writer
	// OnProgress, if set, is told about every progress step (tests).
	OnProgress func(job *pollers.Job, p pollers.BackfillProgress)
}

// BackfillJobResult is what the backfill of one job did.
type BackfillJobResult struct {
	JobID string
	pollers.BackfillResult
}

// RunBackfill loads [From, To) of one dataset through the same assembly as Run (the
// source's client, token source and shared quota limiter, the stream, the seen-store and
// the cursor bucket), job by job, with a separate backfill cursor per job and range: the
// live cursors never move, and running the same command again resumes an interrupted
// backfill. It returns the results of the jobs done so far with the first error.
func RunBackfill(ctx context.Context, o BackfillOptions) ([]BackfillJobResult, error) {
	cfg := o.Config
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.INGRID.Enabled = o.Source == ingrid.SourceName
	cfg.NET2GRID.Enabled = o.Source == net2grid.Name
	cfg.GREX.Enabled = o.Source == grex.SourceName
	if !cfg.INGRID.Enabled && !cfg.NET2GRID.Enabled && !cfg.GREX.Enabled {
		return nil, fmt.Errorf("backfill: unknown source %q (ingrid, net2grid or grex)", o.Source)
	}
	if o.Source == ingrid.SourceName {
		// The command names the dataset: poll it even if the configuration leaves it out.
		cfg.INGRID.Datasets = []string{o.Dataset}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	st, err := OpenState(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if _, err := publish.EnsureStream(ctx, st.JS, publish.StreamConfig{
		Name: cfg.Stream.Name, Prefix: cfg.Stream.SubjectPrefix, Duplicates: cfg.Stream.DuplicateWindow,
		MaxAge: cfg.Stream.MaxAge, Storage: cfg.Stream.Storage, Replicas: cfg.Stream.Replicas,
	}); err != nil {
		return nil, err
	}
	jobs, lim, err := backfillJobs(ctx, Deps{Config: cfg, State: st, Log: log, Version: o.Version}, o)
	if err != nil {
		return nil, err
	}
	runner := &pollers.Runner{
		Publisher: publish.NewPublisher(st.JS),
		Cursors:   pollers.NewKVCursors(st.Cursors),
		Seen:      publish.NewKVSeen(st.JS, st.Seen),
		Prefix:    cfg.Stream.SubjectPrefix,
		Log:       log,
	}
	var usage func() []quota.WindowUsage
	if lim != nil {
		usage = lim.Usage
	}
	var out []BackfillJobResult
	for _, job := range jobs {
		bar := &ProgressBar{W: o.Progress, Label: job.ID()}
		res, err := runner.Backfill(ctx, job, pollers.BackfillOptions{
			From: o.From, To: o.To, Span: o.Span, Restart: o.Restart, Usage: usage,
			OnProgress: func(p pollers.BackfillProgress) {
				bar.Update(p)
				if o.OnProgress != nil {
					o.OnProgress(job, p)
				}
			},
		})
		bar.Done()
		out = append(out, BackfillJobResult{JobID: job.ID(), BackfillResult: res})
		log.Info("backfill", "job", job.ID(), "windows", res.Windows, "published", res.Published,
			"unchanged", res.Deduplicated, "mark", res.Progress.Mark, "error", err)
		if err != nil {
			return out, fmt.Errorf("backfill %s stopped at %s (run the same command again to resume): %w",
				job.ID(), res.Progress.Mark.UTC().Format(time.RFC3339), err)
		}
	}
	return out, nil
}

// backfillJobs builds the source as Run does and returns its jobs of the dataset (and
// partition), with the source's quota limiter.
func backfillJobs(ctx context.Context, d Deps, o BackfillOptions) ([]*pollers.Job, *quota.Limiter, error) {
	var (
		all []*pollers.Job
		lim *quota.Limiter
		err error
	)
	switch o.Source {
	case ingrid.SourceName:
		var opts ingrid.Options
		if opts, err = INGRIDOptions(d); err != nil {
			return nil, nil, err
		}
		lim = opts.Limiter
		var s *ingrid.Source
		if s, err = ingrid.New(opts); err == nil {
			all, err = s.Jobs(ctx)
		}
	case net2grid.Name:
		var opts net2grid.Options
		if opts, _, err = NET2GRIDOptions(ctx, d); err != nil {
			return nil, nil, err
		}
		lim = opts.Limiter
		var s *net2grid.Source
		if s, err = net2grid.New(opts); err == nil {
			all, err = s.Jobs(ctx)
		}
	case grex.SourceName:
		var opts grex.Options
		if opts, err = GREXOptions(d); err != nil {
			return nil, nil, err
		}
		lim = opts.Limiter
		var s *grex.Source
		if s, err = grex.New(opts); err == nil {
			all, err = s.Jobs(ctx)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", o.Source, err)
	}
	jobs := matchJobs(all, o.Dataset, o.Partition)
	if len(jobs) == 0 {
		var known []string
		for _, j := range all {
			known = append(known, j.ID())
		}
		return nil, nil, fmt.Errorf("%w: %s dataset %q partition %q (jobs: %s)", ErrNoBackfillJob,
			o.Source, o.Dataset, o.Partition, strings.Join(known, ", "))
	}
	return jobs, lim, nil
}

// matchJobs keeps the jobs of dataset, and of partition when it is not empty. Partitions
// compare as subject tokens (case-insensitive, escaped).
func matchJobs(all []*pollers.Job, dataset, partition string) []*pollers.Job {
	return slices.DeleteFunc(slices.Clone(all), func(j *pollers.Job) bool {
		if j.Dataset.Name != dataset {
			return true
		}
		return partition != "" && publish.EscapeToken(j.Partition.ID) != publish.EscapeToken(partition)
	})
}

// ProgressBar draws one job's backfill progress on one terminal line (carriage return,
// no cursor control), e.g.
//
//	ingrid.daily-measures.abc [#########-----------]  9/20 windows  45%  120 published  3 unchanged  ETA 2m10s
type ProgressBar struct {
	W     io.Writer // nil draws nothing
	Label string
	drawn bool
}

const barWidth = 24

// Update redraws the bar for p.
func (b *ProgressBar) Update(p pollers.BackfillProgress) {
	if b.W == nil {
		return
	}
	frac := p.Covered
	count := fmt.Sprintf("%d pages", p.Done)
	if p.Total > 0 {
		frac = float64(p.Done) / float64(p.Total)
		count = fmt.Sprintf("%d/%d windows", p.Done, p.Total)
	}
	full := int(frac*barWidth + 0.5)
	eta := "ETA ?"
	if p.ETA >= 0 {
		eta = "ETA " + p.ETA.Round(time.Second).String()
	}
	fmt.Fprintf(b.W, "\r%s [%s%s] %s %3.0f%%  %d published  %d unchanged  %s ",
		b.Label, strings.Repeat("#", full), strings.Repeat("-", barWidth-full), count, 100*p.Covered,
		p.Published, p.Deduplicated, eta)
	b.drawn = true
}

// Done ends the bar's line.
func (b *ProgressBar) Done() {
	if b.W != nil && b.drawn {
		fmt.Fprintln(b.W)
	}
}
