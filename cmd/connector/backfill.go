package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/connector"
	"github.com/gridstream/gridstream/internal/telemetry"
)

// runBackfill is `connector backfill --source S --dataset D [--partition P] --from T1 [--to T2]`.
func runBackfill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "", "upstream: ingrid, net2grid or grex")
	dataset := fs.String("dataset", "", "dataset name, e.g. daily-measures")
	partition := fs.String("partition", "", "contract code, NET2GRID user id or G-REX account (default: every configured one)")
	fromFlag := fs.String("from", "", "start of the range, RFC 3339 or YYYY-MM-DD (UTC), included")
	toFlag := fs.String("to", "", "end of the range, RFC 3339 or YYYY-MM-DD (UTC), excluded (default: now)")
	span := fs.Duration("span", 0, "time span of one request (default: the dataset's maximum)")
	restart := fs.Bool("restart", false, "ignore the saved progress of the same range and start again at --from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *source == "" || *dataset == "" || *fromFlag == "" {
		fs.Usage()
		return errors.New("backfill: --source, --dataset and --from are required")
	}
	from, err := parseTime(*fromFlag)
	if err != nil {
		return fmt.Errorf("backfill --from: %w", err)
	}
	to := time.Now().UTC()
	if *toFlag != "" {
		if to, err = parseTime(*toFlag); err != nil {
			return fmt.Errorf("backfill --to: %w", err)
		}
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log, err := telemetry.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return err
	}
	res, err := connector.RunBackfill(ctx, connector.BackfillOptions{
		Config: cfg, Log: log, Version: version,
		Source: *source, Dataset: *dataset, Partition: *partition,
		From: from, To: to, Span: *span, Restart: *restart,
		Progress: stderr,
	})
	for _, r := range res {
		fmt.Fprintf(stdout, "%s  %s .. %s  %d windows  %d records  %d published  %d unchanged\n",
			r.JobID, from.Format(time.RFC3339), r.Progress.Mark.UTC().Format(time.RFC3339),
			r.Windows, r.Records, r.Published, r.Deduplicated)
	}
	return err
}

// parseTime reads an RFC 3339 time or a UTC date.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2024-03-01T06:00:00+01:00) or a date (2024-03-01)", s)
	}
	return t, nil
}
