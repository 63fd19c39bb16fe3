package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/nats-io/nats.go/jetstream"
)

// TestBackfillINGRIDTenDaysThroughThePipeline backfills ten gas days of INGRID daily
// measures from the sandbox in five windows, interrupted after two and resumed: every
// request is made once, every gas day is published once, and the live cursor stays put.
func TestBackfillINGRIDTenDaysThroughThePipeline(t *testing.T) {
	t.Parallel()
	sb, err := sandbox.Start(sandbox.ServersOptions{INGRID: sandbox.INGRIDOptions{Contracts: demoContracts}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	ns := natstest.Run(t)
	cfg := DemoConfig(sb, ns.URL)
	cfg.HTTPAddr = ""
	ctx := context.Background()

	// The live job already runs: its cursor is now.
	cursors, err := ns.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.KV.Cursors})
	if err != nil {
		t.Fatal(err)
	}
	const jobID = "ingrid.daily-measures.grtgaz-demo-001"
	live := []byte(`{"mark":"2030-01-01T00:00:00Z"}`)
	if _, err := cursors.Put(ctx, jobID, live); err != nil {
		t.Fatal(err)
	}

	to := time.Now().UTC().Truncate(24 * time.Hour).Add(-2 * 24 * time.Hour)
	from := to.Add(-10 * 24 * time.Hour)
	opts := BackfillOptions{
		Config: cfg, Log: slog.New(slog.DiscardHandler),
		Source: "ingrid", Dataset: "daily-measures", Partition: sandbox.INGRIDDemoContract,
		From: from, To: to, Span: 2 * 24 * time.Hour,
	}

	// First run: interrupted once two windows are acknowledged.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := opts
	first.OnProgress = func(_ *pollers.Job, p pollers.BackfillProgress) {
		if p.Done == 2 {
			cancel()
		}
	}
	if _, err := RunBackfill(runCtx, first); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted backfill: %v, want context.Canceled", err)
	}

	// Second run resumes at window 3 and draws its bar.
	var bar bytes.Buffer
	second := opts
	second.Progress = &bar
	res, err := RunBackfill(ctx, second)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].JobID != jobID || !res[0].Progress.Resumed || res[0].Windows != 3 {
		t.Fatalf("resumed backfill: %+v", res)
	}
	if !strings.Contains(bar.String(), "3/5 windows") || !strings.Contains(bar.String(), "5/5 windows") || !strings.Contains(bar.String(), "ETA") {
		t.Errorf("progress bar: %q", bar.String())
	}
	if n := sb.INGRID.Counters.Get("requests.daily-measures"); n != 5 {
		t.Errorf("%d daily-measures requests over both runs, want 5 (one per window)", n)
	}

	// Every gas day of the range is in the stream once; the live cursor did not move.
	stream, err := ns.JS.Stream(ctx, cfg.Stream.Name)
	if err != nil {
		t.Fatal(err)
	}
	days := map[string]int{}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"energy.ingrid.daily-measures.>"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(int(info.State.Msgs))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		var body struct {
			GasDay string `json:"gasDay"`
		}
		if err := json.Unmarshal(m.Data(), &body); err != nil {
			t.Fatal(err)
		}
		days[body.GasDay]++
	}
	if len(days) < 10 {
		t.Errorf("gas days published: %v, want the 10 of the range", days)
	}
	for d, n := range days {
		if n != 1 {
			t.Errorf("gas day %s published %d times", d, n)
		}
	}
	e, err := cursors.Get(ctx, jobID)
	if err != nil || !bytes.Equal(e.Value(), live) {
		t.Fatalf("live cursor after backfill: %s, %v; want %s", e.Value(), err, live)
	}
}

func TestBackfillNamesTheJobsWhenNoneMatch(t *testing.T) {
	t.Parallel()
	sb, err := sandbox.Start(sandbox.ServersOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	ns := natstest.Run(t)
	cfg := DemoConfig(sb, ns.URL)
	now := time.Now()
	_, err = RunBackfill(context.Background(), BackfillOptions{
		Config: cfg, Source: "ingrid", Dataset: "daily-measures", Partition: "NO-SUCH-CONTRACT",
		From: now.Add(-time.Hour), To: now,
	})
	if !errors.Is(err, ErrNoBackfillJob) || !strings.Contains(err.Error(), "grtgaz-demo-001") {
		t.Fatalf("err %v, want ErrNoBackfillJob listing the jobs", err)
	}
}
