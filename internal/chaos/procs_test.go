package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/syncbuf"
)

// bins are the binaries TestMain builds once for the package's tests.
var bins struct {
	connector, natsServer string
	err                   error
}

// buildBinaries builds cmd/connector and nats-server into dir.
func buildBinaries(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	for _, b := range []struct{ out, pkg string }{
		{filepath.Join(dir, "connector"), "./cmd/connector"},
		{filepath.Join(dir, "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	bins.connector, bins.natsServer = filepath.Join(dir, "connector"), filepath.Join(dir, "nats-server")
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the gridstream module")
	}
	return filepath.Dir(gomod), nil
}

func needBinaries(t *testing.T) {
	t.Helper()
	if bins.err != nil {
		t.Fatalf("building the binaries: %v", bins.err)
	}
}

// proc is a child process whose output the test keeps.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *syncbuf.Buffer // stdout and stderr
	done   chan struct{}
	waitEr error
}

// startProc starts bin with args and env (added to a minimal environment); its output goes
// to out (a fresh buffer when nil) and to the shared log when set.
func startProc(t *testing.T, name, bin string, env []string, stdin io.Reader, out *syncbuf.Buffer, args ...string) *proc {
	t.Helper()
	if out == nil {
		out = &syncbuf.Buffer{}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = out, out, stdin
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { p.waitEr = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process and reaps it.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// term sends SIGTERM and returns the exit code (-1: killed after the grace period).
func (p *proc) term(grace time.Duration) int {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.kill()
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// wait waits for the process to end by itself and returns its exit code.
func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		p.kill()
		t.Fatalf("%s did not finish within %s:\n%s", p.name, limit, p.out.String())
		return -1
	}
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, limit, every time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, limit, err)
		}
		time.Sleep(every) // polling a condition, not waiting blindly
	}
}

// waitLine waits until the process printed a line with prefix, and returns the line.
func waitLine(t *testing.T, p *proc, prefix string, limit time.Duration) string {
	t.Helper()
	var line string
	eventually(t, limit, 20*time.Millisecond, p.name+" prints "+prefix, func() error {
		if p.exited() {
			t.Fatalf("%s exited early:\n%s", p.name, p.out.String())
		}
		sc := bufio.NewScanner(strings.NewReader(p.out.String()))
		for sc.Scan() {
			if strings.HasPrefix(strings.TrimSpace(sc.Text()), prefix) {
				line = strings.TrimSpace(sc.Text())
				return nil
			}
		}
		return errors.New("not yet")
	})
	return line
}

// httpDo sends a request to a control or status endpoint and returns the body.
func httpDo(ctx context.Context, method, url string, body string) (int, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, b, err
}
