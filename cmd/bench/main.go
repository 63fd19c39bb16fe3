// Command bench measures gridstream's publish path against the raw JetStream limit of
// the machine it runs on, in one run, and prints one key=value line per figure, the last
// being pipeline_vs_raw. `make bench` runs it; docs/benchmarks.md explains the figures.
//
// Progress and benchstat-compatible "Benchmark…" lines go to stderr, figures to stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"testing"
	"time"
)

func main() {
	testing.Init()
	count := flag.Int("count", 3, "rounds of the raw and pipeline figures (the ratio is the median of the rounds' ratios)")
	benchtime := flag.Duration("benchtime", 2*time.Second, "target duration of one benchmark run")
	users := flag.Int("users", 10_000, "NET2GRID users of the memory and CPU figure (0 skips it)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.StringVar(&memProfile, "memprofile", "", "write a heap profile taken after the users cycle to this file")
	child := flag.Bool("upstream-child", false, "internal: serve the sandbox and NATS for the users figure")
	flag.Parse()
	if *child {
		if err := serveChild(*users); err != nil {
			fmt.Fprintln(os.Stderr, "bench upstream:", err)
			os.Exit(1)
		}
		return
	}
	if err := flag.Set("test.benchtime", benchtime.String()); err != nil {
		panic(err)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(context.Background(), os.Stdout, os.Stderr, *count, *users); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// figures prints key=value lines.
type figures struct{ w io.Writer }

func (f figures) put(key string, format string, v any) {
	fmt.Fprintf(f.w, "%s="+format+"\n", key, v)
}

func run(ctx context.Context, stdout, stderr io.Writer, count, users int) error {
	start := time.Now()
	out := figures{stdout}
	report := func(name string, r testing.BenchmarkResult) {
		fmt.Fprintf(stderr, "Benchmark%s-%d\t%s\t%s\n", name, runtime.GOMAXPROCS(0), r.String(), r.MemString())
	}
	fmt.Fprintf(stderr, "goos: %s\ngoarch: %s\npkg: github.com/gridstream/gridstream/cmd/bench\ncpu: %d cores\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	env, err := NewEnv(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if env != nil {
			env.Close()
		}
	}()

	// 1 and 2: raw and pipeline, alternated so both see the same machine state.
	var raws, pipes, ones, ratios []float64
	for range max(count, 1) {
		rr := testing.Benchmark(env.BenchRaw)
		report("RawPublish", rr)
		pr := testing.Benchmark(env.BenchPipeline)
		report("Pipeline", pr)
		or := testing.Benchmark(env.BenchPipelineOneJob)
		report("PipelineOneJob", or)
		if rr.N == 0 || pr.N == 0 || or.N == 0 {
			return fmt.Errorf("a benchmark failed (raw N=%d, pipeline N=%d, one job N=%d): %v", rr.N, pr.N, or.N, env.Failure())
		}
		raw, pipe := perSecond(rr), perSecond(pr)
		raws, pipes, ratios = append(raws, raw), append(pipes, pipe), append(ratios, pipe/raw)
		ones = append(ones, perSecond(or))
	}
	out.put("raw_publish_msgs_per_sec", "%.0f", median(raws))
	out.put("pipeline_records_per_sec", "%.0f", median(pipes))
	out.put("pipeline_workers", "%d", PipelineWorkers)
	out.put("pipeline_one_job_records_per_sec", "%.0f", median(ones))

	// 3: unchanged re-poll against a seen-store of RepollKeys keys.
	rp, err := env.NewRepoll(ctx)
	if err != nil {
		return fmt.Errorf("re-poll set-up: %w", err)
	}
	out.put("seen_commit_entries_per_sec", "%.0f", rp.CommitRate)
	out.put("seen_load_keys_per_sec", "%.0f", rp.LoadRate)
	out.put("seen_kv_bytes_per_key", "%.1f", rp.KVBytesPerKey)
	rr := testing.Benchmark(rp.Bench)
	report("UnchangedRepoll", rr)
	out.put("repoll_records_checked_per_sec", "%.0f", rr.Extra["records/s"])
	out.put("repoll_allocs_per_record", "%.4f", float64(rr.AllocsPerOp())/RepollKeys)
	out.put("repoll_published", "%d", 0)
	rp = nil

	// 4: memory per seen key, and one cycle of many NET2GRID users.
	out.put("seen_heap_bytes_per_key", "%.1f", SeenBytesPerKey(RepollKeys))
	env.Close()
	env = nil
	freeMemory()
	if users > 0 {
		if err := usersFigure(ctx, out, stderr, users); err != nil {
			return fmt.Errorf("users figure: %w", err)
		}
	}
	out.put("bench_seconds", "%.0f", time.Since(start).Seconds())
	out.put("pipeline_vs_raw", "%.3f", median(ratios))
	return nil
}

// perSecond is ops per second of a result.
func perSecond(r testing.BenchmarkResult) float64 {
	return float64(r.N) / r.T.Seconds()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
