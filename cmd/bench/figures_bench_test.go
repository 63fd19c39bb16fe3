package main

import (
	"context"
	"os"
	"sync"
	"testing"
)

// The Go benchmarks behind every figure of `make bench`, for `go test -bench` with
// -cpuprofile/-memprofile and benchstat:
//
//	go test -run '^$' -bench . -count 6 ./cmd/bench | tee new.txt

var (
	envOnce sync.Once
	envErr  error
	shared  *Env
)

// env is one server for the package's benchmarks (closed when the process exits; its
// temp dir is removed by TestMain).
func env(b *testing.B) *Env {
	b.Helper()
	envOnce.Do(func() { shared, envErr = NewEnv(context.Background()) })
	if envErr != nil {
		b.Fatal(envErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	os.Exit(code)
}

// BenchmarkRawPublish: figure raw_publish_msgs_per_sec (one op = one message).
func BenchmarkRawPublish(b *testing.B) { env(b).BenchRaw(b) }

// BenchmarkPipeline: figure pipeline_records_per_sec (one op = one record published).
func BenchmarkPipeline(b *testing.B) { env(b).BenchPipeline(b) }

// BenchmarkUnchangedRepoll: figure repoll_records_checked_per_sec (one op = one poll of
// RepollKeys unchanged records).
func BenchmarkUnchangedRepoll(b *testing.B) {
	rp, err := env(b).NewRepoll(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	rp.Bench(b)
}

// BenchmarkSeenBytesPerKey: figure seen_heap_bytes_per_key.
func BenchmarkSeenBytesPerKey(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(SeenBytesPerKey(RepollKeys), "B/key")
	}
}

// BenchmarkPipelineOneJob: figure pipeline_one_job_records_per_sec.
func BenchmarkPipelineOneJob(b *testing.B) { env(b).BenchPipelineOneJob(b) }
