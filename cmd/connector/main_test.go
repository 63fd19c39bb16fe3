package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binary is the connector built once for the tests that run it as a process, the way an
// operator (or Kubernetes) does.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "connector-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "connector")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the environment without any GRIDSTREAM_ variable of the developer's shell.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GRIDSTREAM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

var summaryRE = regexp.MustCompile(`demo: published (\d+) events on (\d+) subjects`)

func TestDemoForRunsAndSummarises(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "demo", "--for", "6s", "--http", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	m := summaryRE.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no summary line in:\n%s", stdout.String())
	}
	events, _ := strconv.Atoi(m[1])
	subjects, _ := strconv.Atoi(m[2])
	// Every source must have published: INGRID (2 contracts x 19 datasets), NET2GRID, G-REX.
	for _, src := range []string{"energy.ingrid.", "energy.net2grid.readings.u-", "energy.grex.certificates."} {
		if !strings.Contains(stdout.String(), src) {
			t.Errorf("no %s events in the demo output", src)
		}
	}
	if events == 0 || subjects < 40 {
		t.Fatalf("demo published %d events on %d subjects", events, subjects)
	}
}

func TestSIGTERMFinishesInFlightWorkAndExitsZero(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binary, "demo", "--http", "127.0.0.1:0")
	cmd.Env = cleanEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// Wait for events to flow, then ask it to stop in the middle of its first poll cycle.
	deadline := time.After(60 * time.Second)
	for flowing := false; !flowing; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended early; stderr:\n%s", stderr.String())
			}
			flowing = strings.Contains(l, " published ")
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatal("no events within 60s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var summary bool
	for l := range lines {
		summary = summary || summaryRE.MatchString(l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\nstderr:\n%s", err, stderr.String())
	}
	if !summary {
		t.Fatal("no summary after SIGTERM: the stream was not readable after shutdown")
	}
}

func TestBadConfigStopsStartupNamingTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"bad storage", []string{"GRIDSTREAM_INGRID_ENABLED=true", "GRIDSTREAM_INGRID_CLIENT_ID=x", "GRIDSTREAM_INGRID_CLIENT_SECRET=y", "GRIDSTREAM_INGRID_CONTRACTS=C", "GRIDSTREAM_STREAM_STORAGE=disk"}, "GRIDSTREAM_STREAM_STORAGE"},
		{"not a duration", []string{"GRIDSTREAM_LEASE_TTL=soon"}, "GRIDSTREAM_LEASE_TTL"},
		{"no source", nil, "GRIDSTREAM_INGRID_ENABLED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(binary, "run")
			cmd.Env = cleanEnv(tc.env...)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("run started with bad config:\n%s", out)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit %v, want 1", err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("error does not name %s:\n%s", tc.want, out)
			}
		})
	}
}

func TestVersionAndEnvCommands(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(binary, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "gridstream ") {
		t.Fatalf("version: %q %v", out, err)
	}
	out, err = exec.Command(binary, "env").Output()
	if err != nil || !strings.Contains(string(out), "`GRIDSTREAM_NATS_URL`") {
		t.Fatalf("env: %v\n%s", err, out)
	}
}

func TestREADMEDocumentsEveryVariable(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "env").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.Contains(string(readme), line) {
			t.Errorf("README's configuration table lacks or differs on:\n%s\n(regenerate it with `connector env`)", line)
		}
	}
}
