package connector

import (
	"context"
	"log/slog"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/pollers"
)

// CheckResult is one dataset's check: a token and one page, decoded.
type CheckResult struct {
	Source, Dataset, Partition string
	Records                    int
	Err                        error
}

// Check connects to NATS and reads one page of the first job of every dataset, without
// publishing or moving any cursor. The error is for NATS; upstream failures are results.
func Check(ctx context.Context, cfg config.Config, log *slog.Logger, version string) ([]CheckResult, error) {
	st, err := OpenState(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	srcs, err := buildSources(ctx, Deps{Config: cfg, State: st, Log: log, Version: version})
	if err != nil {
		return nil, err
	}
	var out []CheckResult
	for _, s := range srcs {
		jobs, err := s.Jobs(ctx)
		if err != nil {
			out = append(out, CheckResult{Source: s.name, Err: err})
			continue
		}
		seen := map[string]bool{}
		for _, j := range jobs {
			if seen[j.Dataset.Name] {
				continue
			}
			seen[j.Dataset.Name] = true
			out = append(out, checkJob(ctx, j))
		}
	}
	return out, nil
}

func checkJob(ctx context.Context, j *pollers.Job) CheckResult {
	ds := j.Dataset
	r := CheckResult{Source: ds.Source, Dataset: ds.Name, Partition: j.Partition.ID}
	now := time.Now()
	span := max(ds.LookBack, time.Hour)
	if ds.MaxSpan > 0 {
		span = min(span, ds.MaxSpan)
	}
	w := pollers.Window{From: now.Add(-span), To: now}
	if ds.PageSize > 0 {
		w.Top = min(ds.PageSize, 10)
	}
	path, q := ds.Request(j.Partition, w)
	body, err := j.Fetcher.Get(ctx, path, q)
	if err != nil {
		r.Err = err
		return r
	}
	recs, err := ds.Decode(body)
	r.Records, r.Err = len(recs), err
	return r
}
