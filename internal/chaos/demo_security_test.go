package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/connector"
	"github.com/gridstream/gridstream/internal/natstest"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/syncbuf"
	"github.com/gridstream/gridstream/internal/telemetry"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spanText renders every span's name, attributes, events and status for a scan.
func spanText(exp *tracetest.InMemoryExporter) string {
	var b strings.Builder
	for _, s := range exp.GetSpans() {
		fmt.Fprintf(&b, "%s %s\n", s.Name, s.Status.Description)
		for _, a := range s.Attributes {
			fmt.Fprintf(&b, "  %s=%s\n", a.Key, a.Value.String())
		}
		for _, e := range s.Events {
			fmt.Fprintf(&b, "  event %s\n", e.Name)
			for _, a := range e.Attributes {
				fmt.Fprintf(&b, "    %s=%s\n", a.Key, a.Value.String())
			}
		}
	}
	return b.String()
}

// TestDemoLeaksNoSecretInLogsSpansMetricsStatusPageOrEvents runs the demo assembly (sandbox,
// NATS, every source, the operator's logins) with debug logs, an in-memory span exporter and
// faults that exercise the error paths (5xx, 401 after revocation, a failed token call), and
// looks for every client secret, password, the token key and every token the sandbox issued
// in the logs, the spans, /metrics, the status page, /readyz and every event; and for e-mail
// addresses in all of them.
func TestDemoLeaksNoSecretInLogsSpansMetricsStatusPageOrEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo assembly")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const users = 2
	sb, err := sandbox.Start(sandbox.ServersOptions{NET2GRID: sandbox.NET2GRIDOptions{DemoUsers: users}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sb.Close)
	ns := natstest.Run(t)
	cfg := connector.DemoConfig(sb, ns.URL)
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.INGRID.Contracts = []string{sandbox.INGRIDDemoContract}
	cfg.INGRID.Datasets = []string{"operational-notices", "daily-allocations", "services"}
	logs := &syncbuf.Buffer{}
	log, err := telemetry.NewLogger(logs, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}

	// The operator's logins, as the demo does them.
	st, err := connector.OpenState(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	d := connector.Deps{Config: cfg, State: st, Log: log}
	nopts, reg, err := connector.NET2GRIDOptions(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	var entries []net2grid.UserEntry
	for i := 1; i <= users; i++ {
		entries = append(entries, net2grid.UserEntry{Email: sandbox.NET2GRIDDemoUser(i), Password: secret.New(sandbox.NET2GRIDDemoPassword)})
	}
	for _, r := range net2grid.Import(ctx, nopts, reg, entries) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	gopts, err := connector.GREXOptions(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := grex.LoginWith(ctx, gopts, func(_ context.Context, u string) (string, error) { return sb.GREX.Approve(u) }, logs); err != nil {
		t.Fatal(err)
	}
	st.Close()
	tokens := map[string]bool{}
	for _, tk := range sb.Tokens() {
		tokens[tk] = true
	}

	// Error paths: revoked access tokens (401, refresh, retry), 5xx and a failing token call.
	sb.GREX.RevokeAccess()
	sb.Revoke("net2grid")
	sb.INGRID.Faults.Set(sandbox.INGRIDTokenEndpoint, sandbox.Fault{Status: 500, Count: 1})
	sb.INGRID.Faults.Set("daily-allocations", sandbox.Fault{Status: 502, Count: 2})
	sb.GREX.Faults.Set(sandbox.GREXEndpointCertificates, sandbox.Fault{HTML: true, Count: 1})
	sb.NET2GRID.Faults.Set(sandbox.NET2GRIDEndpointMeasurements, sandbox.Fault{Truncate: true, Count: 1})

	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(ctx, telemetry.Options{SpanExporter: exp, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	started := make(chan connector.Running, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- connector.Run(runCtx, connector.Options{Config: cfg, Log: log, Telemetry: tel, Version: "test",
			Started: func(r connector.Running) { started <- r }})
	}()
	var run connector.Running
	select {
	case run = <-started:
	case err := <-errc:
		t.Fatal(err)
	}
	eventually(t, time.Minute, 100*time.Millisecond, "every job succeeds once", func() error {
		ok, failing := 0, ""
		for _, j := range tel.Board.Jobs() {
			if !j.LastSuccess.IsZero() {
				ok++
			} else {
				failing += "; " + j.ID + ": " + j.LastError
			}
		}
		if ok < run.Jobs {
			return fmt.Errorf("%d of %d jobs%s", ok, run.Jobs, failing)
		}
		return nil
	})
	var pages []string
	for _, p := range []string{"/metrics", "/", "/readyz"} {
		code, b, err := httpDo(ctx, "GET", "http://"+run.HTTPAddr+p, "")
		if err != nil || code == 404 {
			t.Fatalf("GET %s: %d %v", p, code, err)
		}
		pages = append(pages, string(b))
	}
	for _, tk := range sb.Tokens() {
		tokens[tk] = true
	}
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(tokens) < 3 {
		t.Fatalf("only %d tokens issued: the scan would prove little", len(tokens))
	}
	if fired := sb.INGRID.Counters.Get("faults."+sandbox.INGRIDTokenEndpoint) + sb.GREX.Counters.Get("faults."+sandbox.GREXEndpointCertificates); fired == 0 {
		t.Error("the error paths were not exercised")
	}

	secrets := knownSecrets(cfg.TokenKey.Reveal(), tokens)
	var leaks []string
	leaks = append(leaks, scanText("logs", logs.String(), secrets)...)
	leaks = append(leaks, scanText("spans", spanText(exp), secrets)...)
	for i, p := range []string{"/metrics", "status page", "/readyz"} {
		leaks = append(leaks, scanText(p, pages[i], secrets)...)
	}
	leaks = append(leaks, scanEvents(t, ns.URL, cfg.Stream.Name, secrets)...)
	for _, l := range leaks {
		t.Error("leak: " + l)
	}
	t.Logf("scanned %d bytes of logs, %d spans, %d tokens, %d secrets", len(logs.String()), len(exp.GetSpans()), len(tokens), len(secrets))
}

// TestRunDemoPrintsNoSecret runs connector.RunDemo itself for a few seconds and scans its
// output and logs for the demo's client secrets, password and e-mail addresses.
func TestRunDemoPrintsNoSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	out, logs := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	log, err := telemetry.NewLogger(logs, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := connector.RunDemo(context.Background(), connector.DemoOptions{For: 4 * time.Second, Out: out, Log: log, DataDir: t.TempDir(), Users: 2, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Events == 0 {
		t.Fatal("the demo published nothing")
	}
	secrets := knownSecrets("", nil)
	for _, l := range append(scanText("demo output", out.String(), secrets), scanText("demo logs", logs.String(), secrets)...) {
		t.Error("leak: " + l)
	}
}
