package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/syncbuf"
	"github.com/nats-io/nats.go"
)

var (
	long      = flag.Bool("chaos.long", false, "run the long chaos test (make chaos): minutes of kills and several NATS restarts")
	chaosSeed = flag.Uint64("chaos.seed", 0, "seed of the chaos (kill moments, fault choices, sandbox dice); 0: from the clock")
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "gridstream-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		bins.err = buildBinaries(dir)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// chaosDatasets are the INGRID datasets the chaos run polls: every kind (notices, daily and
// hourly series, reference data), each behind a different fault.
var chaosDatasets = []string{"operational-notices", "confirmation-notice", "daily-allocations", "hourly-measures", "services", "supply-links", "pce-connection-links"}

const chaosUsers = 3

// rig is the chaos set-up: a nats-server process, a sandbox process and the connector's
// environment.
type rig struct {
	t        *testing.T
	dir      string
	natsPort int
	natsDir  string
	nats     *proc
	natsURL  string
	control  string
	info     sandbox.SandboxInfo
	tokenKey string
	httpAddr string
	env      []string
	logs     *syncbuf.Buffer // every connector process's output
	scraped  []string        // /metrics and status pages taken during the run
	tokens   map[string]bool
	sandbox  *proc
}

func (r *rig) startNATS() {
	r.t.Helper()
	r.nats = startProc(r.t, "nats-server", bins.natsServer, nil, nil, nil,
		"-a", "127.0.0.1", "-p", strconv.Itoa(r.natsPort), "-js", "-sd", r.natsDir)
	eventually(r.t, 20*time.Second, 50*time.Millisecond, "nats-server accepts connections", func() error {
		nc, err := nats.Connect(r.natsURL, nats.Timeout(time.Second))
		if err != nil {
			return err
		}
		defer nc.Close()
		_, err = nc.RTT()
		return err
	})
}

// restartNATS stops nats-server gracefully and starts it again on the same store and port.
func (r *rig) restartNATS() {
	r.t.Helper()
	if code := r.nats.term(30 * time.Second); code != 0 {
		r.t.Errorf("nats-server exit code on SIGTERM = %d, want 0", code)
	}
	r.startNATS()
}

func (r *rig) startSandbox(seed uint64, grexPerHour int) {
	r.t.Helper()
	r.sandbox = startProc(r.t, "sandbox", bins.connector, nil, nil, nil, "sandbox",
		"--host", "127.0.0.1", "--ingrid-port", "0", "--net2grid-port", "0", "--grex-port", "0",
		"--control", "127.0.0.1:0", "--faults", "off", "--seed", strconv.FormatUint(seed, 10),
		"--users", strconv.Itoa(chaosUsers), "--grex-per-hour", strconv.Itoa(grexPerHour))
	line := waitLine(r.t, r.sandbox, "control", 20*time.Second)
	r.control = strings.Fields(line)[1]
	code, body, err := httpDo(context.Background(), "GET", r.control+"/_sandbox/info", "")
	if err != nil || code != 200 {
		r.t.Fatalf("sandbox info: %d %v", code, err)
	}
	if err := json.Unmarshal(body, &r.info); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) buildEnv(grexPerHour int) {
	i := r.info
	r.env = []string{
		"GRIDSTREAM_NATS_URL=" + r.natsURL,
		"GRIDSTREAM_TOKEN_KEY=" + r.tokenKey,
		"GRIDSTREAM_HTTP_ADDR=" + r.httpAddr,
		"GRIDSTREAM_LOG_FORMAT=json",
		"GRIDSTREAM_LOG_LEVEL=debug",
		// A SIGKILLed replica's leases stay held for the lease TTL (30 s by default) before
		// its successor polls again: a short TTL lets most lives between two kills poll.
		"GRIDSTREAM_LEASE_TTL=2s",
		"GRIDSTREAM_INGRID_ENABLED=true",
		"GRIDSTREAM_INGRID_TOKEN_URL=" + i.INGRIDURL + sandbox.INGRIDTokenPath,
		"GRIDSTREAM_INGRID_API_BASE=" + i.INGRIDURL,
		"GRIDSTREAM_INGRID_CLIENT_ID=" + sandbox.INGRIDDemoClientID,
		"GRIDSTREAM_INGRID_CLIENT_SECRET=" + sandbox.INGRIDDemoClientSecret,
		"GRIDSTREAM_INGRID_CONTRACTS=" + sandbox.INGRIDDemoContract,
		"GRIDSTREAM_INGRID_DATASETS=" + strings.Join(chaosDatasets, ","),
		"GRIDSTREAM_INGRID_PER_MINUTE=600",
		"GRIDSTREAM_INGRID_TIMEOUT=3s",
		"GRIDSTREAM_NET2GRID_ENABLED=true",
		"GRIDSTREAM_NET2GRID_API_BASE=" + i.NET2GRIDURL,
		"GRIDSTREAM_NET2GRID_CLIENT_ID=" + sandbox.NET2GRIDDemoClientID,
		"GRIDSTREAM_NET2GRID_CLIENT_SECRET=" + sandbox.NET2GRIDDemoClientSecret,
		"GRIDSTREAM_NET2GRID_TIMEOUT=3s",
		"GRIDSTREAM_GREX_ENABLED=true",
		"GRIDSTREAM_GREX_API_BASE=" + i.GREXURL,
		"GRIDSTREAM_GREX_AUTHORIZE_URL=" + i.GREXAuthorizeURL,
		"GRIDSTREAM_GREX_TOKEN_URL=" + i.GREXTokenURL,
		"GRIDSTREAM_GREX_CLIENT_ID=" + i.GREXClientID,
		"GRIDSTREAM_GREX_REDIRECT_URI=" + i.GREXRedirectURI,
		"GRIDSTREAM_GREX_SCOPE=" + i.GREXScope,
		"GRIDSTREAM_GREX_ACCOUNTS=" + strings.Join(i.GREXAccounts, ","),
		"GRIDSTREAM_GREX_PER_HOUR=" + strconv.Itoa(grexPerHour),
		"GRIDSTREAM_GREX_TIMEOUT=3s",
	}
}

// bootstrap logs in the NET2GRID users and the G-REX operator through the CLI, as an
// operator does once per deployment.
func (r *rig) bootstrap() {
	r.t.Helper()
	var users strings.Builder
	for n := 1; n <= chaosUsers; n++ {
		fmt.Fprintf(&users, "%s,%s\n", sandbox.NET2GRIDDemoUser(n), sandbox.NET2GRIDDemoPassword)
	}
	imp := startProc(r.t, "users import", bins.connector, r.env, strings.NewReader(users.String()), r.logs, "users", "import", "-")
	if code := imp.wait(r.t, time.Minute); code != 0 {
		r.t.Fatalf("users import exit %d:\n%s", code, imp.out.String())
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	login := startProc(r.t, "login grex", bins.connector, r.env, pr, r.logs, "login", "grex")
	authURL := waitLine(r.t, login, "http", 30*time.Second)
	code, loc, err := httpDo(context.Background(), "POST", r.control+"/_sandbox/grex/approve", authURL)
	if err != nil || code != 200 {
		r.t.Fatalf("approve: %d %v %s", code, err, loc)
	}
	if _, err := pw.Write(append(loc, '\n')); err != nil {
		r.t.Fatal(err)
	}
	_ = pw.Close() // exec waits for stdin to be drained before Wait returns
	if code := login.wait(r.t, time.Minute); code != 0 {
		r.t.Fatalf("login grex exit %d:\n%s", code, login.out.String())
	}
}

func (r *rig) startConnector() *proc {
	return startProc(r.t, "connector run", bins.connector, r.env, nil, r.logs, "run")
}

// control calls the sandbox's control API and fails the test on an error.
func (r *rig) controlCall(method, path, body string) []byte {
	r.t.Helper()
	code, b, err := httpDo(context.Background(), method, r.control+path, body)
	if err != nil || code >= 300 {
		r.t.Fatalf("%s %s: %d %v %s", method, path, code, err, b)
	}
	return b
}

func (r *rig) setFaults(profile map[string]map[string]sandbox.Fault) {
	r.t.Helper()
	for up, eps := range profile {
		for ep, f := range eps {
			b, _ := json.Marshal(f)
			r.controlCall("PUT", "/_sandbox/faults/"+up+"/"+ep, string(b))
		}
	}
}

// collectTokens remembers every token the sandbox has issued so far, for the secret scan.
func (r *rig) collectTokens() {
	_, b, err := httpDo(context.Background(), "GET", r.control+"/_sandbox/tokens", "")
	if err != nil {
		return
	}
	var list []string
	if json.Unmarshal(b, &list) == nil {
		for _, tk := range list {
			r.tokens[tk] = true
		}
	}
}

// scrape keeps the running connector's /metrics and status page for the secret scan.
func (r *rig) scrape() {
	for _, p := range []string{"/metrics", "/", "/readyz"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		code, b, err := httpDo(ctx, "GET", "http://"+r.httpAddr+p, "")
		cancel()
		if err == nil && code != 404 {
			r.scraped = append(r.scraped, string(b))
		}
	}
}

func (r *rig) counters() map[string]map[string]int64 {
	r.t.Helper()
	var c map[string]map[string]int64
	if err := json.Unmarshal(r.controlCall("GET", "/_sandbox/counters", ""), &c); err != nil {
		r.t.Fatal(err)
	}
	return c
}

// figures are what a chaos run reports.
type figures struct {
	Kills, NATSRestarts, SelfExits, Revocations, Storms int
	Events, Checked, Edge, Lost, Stale, Duplicates      int
	Violations, WriteAttempts, FaultsFired              int64
}

func (f figures) String() string {
	return fmt.Sprintf("kills survived %d, NATS restarts %d, connector self-exits %d, token revocations %d, 429 storms %d, faults fired %d; "+
		"events %d, records checked %d (%d at the backfill edge skipped), lost %d, stale %d, duplicate %d, quota violations %d, write attempts %d",
		f.Kills, f.NATSRestarts, f.SelfExits, f.Revocations, f.Storms, f.FaultsFired,
		f.Events, f.Checked, f.Edge, f.Lost, f.Stale, f.Duplicates, f.Violations, f.WriteAttempts)
}

// TestChaosKillsRestartsAndFaultsLoseNothingDuplicateNothingBreakNoQuota is the chaos run:
// real nats-server, sandbox with faults, the connector SIGKILLed at random moments and
// restarted, NATS restarted mid-run; then faults off, one clean cycle, and the stream is
// checked against what the sandbox serves now.
func TestChaosKillsRestartsAndFaultsLoseNothingDuplicateNothingBreakNoQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run builds and runs the binaries")
	}
	needBinaries(t)
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	chaosFor, natsRestarts := 30*time.Second, 1
	if *long {
		// Four minutes of restarts use at most 400 of the 500 G-REX requests an hour allows
		// (100/min; GRIDSTREAM_GREX_PER_HOUR cannot go above the registry's limit), leaving
		// room for the clean cycle and the reference run.
		chaosFor, natsRestarts = 4*time.Minute, 3
	}
	grexPerHour := sandbox.GREXDefaultPerHour
	t.Logf("chaos seed %d (rerun with -chaos.seed=%d), chaos phase %s", seed, seed, chaosFor)
	rng := mrand.New(mrand.NewPCG(seed, 7))

	dir := t.TempDir()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	r := &rig{
		t: t, dir: dir, natsPort: freePort(t), natsDir: filepath.Join(dir, "nats"),
		tokenKey: hex.EncodeToString(key), httpAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		logs: &syncbuf.Buffer{}, tokens: map[string]bool{},
	}
	r.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", r.natsPort)
	r.startNATS()
	r.startSandbox(seed, grexPerHour)
	r.buildEnv(grexPerHour)
	r.bootstrap()
	r.collectTokens()

	// Chaos phase.
	var fig figures
	r.setFaults(sandbox.ChaosFaults())
	upstreams := []string{"ingrid", "net2grid", "grex"}
	start := time.Now()
	restartEvery := chaosFor / time.Duration(natsRestarts+1)
	nextRestart := start.Add(restartEvery)
	for time.Since(start) < chaosFor {
		c := r.startConnector()
		if fig.NATSRestarts < natsRestarts && time.Now().After(nextRestart) {
			// Restart NATS under a running connector, then let it reconnect for a while.
			select {
			case <-time.After(time.Duration(300+rng.IntN(700)) * time.Millisecond):
			case <-c.done:
			}
			r.restartNATS()
			fig.NATSRestarts++
			nextRestart = nextRestart.Add(restartEvery)
		}
		life := time.Duration(500+rng.IntN(5500)) * time.Millisecond
		select {
		case <-time.After(life):
		case <-c.done:
		}
		if c.exited() {
			fig.SelfExits++
			t.Logf("connector exited by itself (code %d); restarting", c.cmd.ProcessState.ExitCode())
		} else {
			if rng.IntN(3) == 0 {
				r.scrape()
			}
			c.kill()
			fig.Kills++
		}
		r.collectTokens()
		switch rng.IntN(5) {
		case 0:
			r.controlCall("POST", "/_sandbox/revoke/"+upstreams[rng.IntN(3)], "")
			fig.Revocations++
		case 1:
			b, _ := json.Marshal(sandbox.Fault{Status: 429, RetryAfter: "1", Count: 10 + rng.IntN(20)})
			r.controlCall("PUT", "/_sandbox/faults/"+upstreams[rng.IntN(3)]+"/*", string(b))
			fig.Storms++
		case 2:
			r.setFaults(sandbox.ChaosFaults())
		}
	}

	if os.Getenv("CHAOS_DEBUG") != "" {
		t.Logf("connector output after the chaos phase (tail):\n%s", tail(r.logs.String(), 80))
	}
	// A connector that runs through a fault storm stops cleanly on SIGTERM.
	c := r.startConnector()
	waitReady(t, r, c)
	if code := c.term(time.Minute); code != 0 {
		t.Errorf("connector exit code on SIGTERM during faults = %d, want 0\n%s", code, tail(c.out.String(), 40))
	}

	// Clean phase: faults off, data frozen, one clean cycle, then the check.
	r.controlCall("DELETE", "/_sandbox/faults", "")
	r.controlCall("POST", "/_sandbox/clock/freeze", "")
	c = r.startConnector()
	want := referenceRun(t, r)
	fig.Checked = len(want.body)
	var res check
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if c.exited() {
			t.Fatalf("connector exited during the clean cycle:\n%s", tail(c.out.String(), 40))
		}
		res = checkStream(t, r.natsURL, "ENERGY", want)
		if res.lost+res.stale == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream does not hold what the sandbox serves within 90s: %d entities missing, %d stale (e.g. %s)\nclean-cycle connector (tail):\n%s",
				res.lost, res.stale, res.example, tail(c.out.String(), 80))
		}
	}
	r.collectTokens()
	r.scrape()
	if code := c.term(time.Minute); code != 0 {
		t.Errorf("connector exit code on SIGTERM = %d, want 0\n%s", code, tail(c.out.String(), 40))
	}
	res = checkStream(t, r.natsURL, "ENERGY", want)
	fig.Events, fig.Edge, fig.Lost, fig.Stale, fig.Duplicates = res.events, res.edge, res.lost, res.stale, res.duplicates

	cnt := r.counters()
	t.Logf("sandbox counters: %v", cnt)
	fig.Violations = cnt["grex"]["violations"]
	fig.WriteAttempts = cnt["grex"]["write_attempts"] + cnt["net2grid"]["write_attempts"] + cnt["ingrid"]["write_attempts"]
	for _, m := range cnt {
		for k, v := range m {
			if strings.HasPrefix(k, "faults.") {
				fig.FaultsFired += v
			}
		}
	}
	if code := r.sandbox.term(30 * time.Second); code != 0 {
		t.Errorf("sandbox exit code on SIGTERM = %d, want 0", code)
	}

	// Secrets: none in any log line, scrape or event.
	secrets := knownSecrets(r.tokenKey, r.tokens)
	leaks := scanEvents(t, r.natsURL, "ENERGY", secrets)
	leaks = append(leaks, scanText("connector logs", r.logs.String(), secrets)...)
	for i, s := range r.scraped {
		leaks = append(leaks, scanText(fmt.Sprintf("scrape %d", i), s, secrets)...)
	}
	for _, l := range leaks {
		t.Errorf("leak: %s", l)
	}

	summary := "chaos figures: " + fig.String()
	t.Log(summary)
	fmt.Println(summary) // shown by `make chaos` without -v
	if fig.SelfExits > 3*fig.NATSRestarts {
		// A connector that cannot start (bad configuration) must not pass as "survived".
		t.Errorf("the connector exited by itself %d times", fig.SelfExits)
	}
	if fig.Kills == 0 || fig.NATSRestarts < natsRestarts {
		t.Errorf("chaos too tame: %d kills, %d NATS restarts", fig.Kills, fig.NATSRestarts)
	}
	if fig.Lost != 0 || fig.Stale != 0 || fig.Duplicates != 0 {
		t.Errorf("lost %d, stale %d, duplicate %d: want 0", fig.Lost, fig.Stale, fig.Duplicates)
	}
	if fig.Violations != 0 || fig.WriteAttempts != 0 {
		t.Errorf("G-REX violations %d, write attempts %d: want 0 (counters %v)", fig.Violations, fig.WriteAttempts, cnt["grex"])
	}
	if t.Failed() {
		t.Logf("connector output (tail):\n%s", tail(r.logs.String(), 60))
	}
}

// waitReady waits until the connector's /readyz answers 200.
func waitReady(t *testing.T, r *rig, c *proc) {
	t.Helper()
	eventually(t, 30*time.Second, 50*time.Millisecond, "connector ready", func() error {
		if c.exited() {
			t.Fatalf("connector exited:\n%s", tail(c.out.String(), 40))
		}
		code, _, err := httpDo(context.Background(), "GET", "http://"+r.httpAddr+"/readyz", "")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("readyz %d", code)
		}
		return nil
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
