package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/gridstream/gridstream/internal/connector"
)

func openFile(path string) (*os.File, error) { return os.Open(path) }

// runCheck validates the configuration, reaches NATS, and reads one page of the first
// job of every dataset of every enabled source, printing what works. It publishes nothing.
func runCheck(ctx context.Context, stdout, stderr io.Writer) error {
	cfg, log, err := loadConfig(stderr)
	if err != nil {
		fmt.Fprintln(stdout, "config   FAIL  ", err)
		return err
	}
	fmt.Fprintln(stdout, "config   ok")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	results, err := connector.Check(ctx, cfg, log, version)
	if err != nil {
		fmt.Fprintln(stdout, "nats     FAIL  ", err)
		return err
	}
	fmt.Fprintln(stdout, "nats     ok")
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDATASET\tPARTITION\tRESULT")
	failed := 0
	for _, r := range results {
		res := fmt.Sprintf("ok (%d records)", r.Records)
		if r.Err != nil {
			failed++
			res = "FAIL: " + r.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Source, r.Dataset, r.Partition, res)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("check: %d of %d datasets failed", failed, len(results))
	}
	return nil
}
