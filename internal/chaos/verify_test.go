package chaos

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/connector"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/ingrid"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/telemetry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// event is one stored message.
type event struct {
	Subject string
	Header  nats.Header
	Data    []byte
}

// readStream returns every message of stream, in order.
func readStream(t *testing.T, url, stream string) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	if total == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]event, 0, total)
	for len(out) < total {
		batch, err := cons.Fetch(min(1000, total-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			out = append(out, event{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		}
		if err := batch.Error(); err != nil && n == 0 {
			t.Fatalf("read %s: %v after %d of %d", stream, err, len(out), total)
		}
	}
	return out
}

// entity is the identity of an upstream record in a stream whatever the prefix: the
// subject below its first token and the entity key (ce-subject).
func entity(subject string, h nats.Header) string {
	_, rest, _ := strings.Cut(subject, ".")
	return rest + " | " + h.Get("ce-subject")
}

// check is the comparison of a stream with the reference.
type check struct {
	events, lost, stale, duplicates int
	// edge counts reference entities absent from the stream because they lie between the
	// chaos connector's backfill horizon and the reference's: a job's first poll reads
	// [now-Backfill, now), and under chaos that first success comes later than the start.
	edge    int
	example string
}

// ref is the reference: entity → body of its current revision, and entity → record time.
// Bodies are compared, not event ids: an id names the revision it replaces too, so an
// entity the chaos stream saw revised (A, then B) ends with id(A→B), while the fresh
// reference publishes B as id(→B).
type ref struct {
	body map[string]string
	time map[string]time.Time
	// horizon is, per "source.dataset", the oldest record time the chaos connector's first
	// backfill is sure to have covered.
	horizon map[string]time.Time
}

// horizons computes, per dataset with a time backfill, the oldest record time that a
// backfill started any time in the last quarter of an hour is sure to read.
func horizons() map[string]time.Time {
	out := map[string]time.Time{}
	for _, list := range [][]*pollers.Dataset{ingrid.Datasets, net2grid.Datasets, grex.Datasets} {
		for _, d := range list {
			if d.Backfill > 0 {
				out[d.Source+"."+d.Name] = time.Now().Add(-d.Backfill).Add(15 * time.Minute)
			}
		}
	}
	return out
}

// checkStream compares the body of the last event of every entity in stream with want,
// and counts event ids stored twice.
func checkStream(t *testing.T, url, stream string, want ref) check {
	t.Helper()
	evs := readStream(t, url, stream)
	last := map[string]string{} // entity → body of its last event
	ids := map[string]bool{}
	var c check
	c.events = len(evs)
	for _, e := range evs {
		id := e.Header.Get(jetstream.MsgIDHeader)
		if id == "" || id != e.Header.Get("ce-id") {
			t.Errorf("event on %s: Nats-Msg-Id %q and ce-id %q differ", e.Subject, id, e.Header.Get("ce-id"))
		}
		if ids[id] {
			c.duplicates++
		}
		ids[id] = true
		last[entity(e.Subject, e.Header)] = string(e.Data)
	}
	for _, k := range sortedKeys(want.body) {
		got, ok := last[k]
		ds := strings.Join(strings.SplitN(k, ".", 3)[:2], ".")
		switch {
		case !ok && !want.horizon[ds].IsZero() && want.time[k].Before(want.horizon[ds]):
			c.edge++
		case !ok:
			c.lost++
			if c.example == "" {
				c.example = "missing " + k
			}
		case got != want.body[k]:
			c.stale++
			if c.example == "" {
				c.example = "stale " + k
			}
		}
	}
	return c
}

// referenceRun is what a fresh connector publishes from the sandbox right now: an
// in-process connector on the same NATS (its own stream, prefix and state buckets, the
// same shared quota bucket, so the upstream's limits hold over both) runs until every
// job has had a successful poll.
func referenceRun(t *testing.T, r *rig) ref {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := config.Defaults()
	cfg.NATS.URL = r.natsURL
	cfg.HTTPAddr = ""
	cfg.TokenKey = secret.New(r.tokenKey)
	cfg.Stream.Name, cfg.Stream.SubjectPrefix = "VERIFY", "verify"
	cfg.KV.Cursors, cfg.KV.Seen, cfg.KV.Tokens, cfg.KV.Leases = "verify_cursors", "verify_seen", "verify_tokens", "verify_leases"
	i := r.info
	cfg.INGRID.Enabled = true
	cfg.INGRID.TokenURL, cfg.INGRID.APIBase = i.INGRIDURL+sandbox.INGRIDTokenPath, i.INGRIDURL
	cfg.INGRID.ClientID, cfg.INGRID.ClientSecret = sandbox.INGRIDDemoClientID, secret.New(sandbox.INGRIDDemoClientSecret)
	cfg.INGRID.Contracts, cfg.INGRID.Datasets, cfg.INGRID.PerMinute = []string{sandbox.INGRIDDemoContract}, chaosDatasets, 600
	cfg.NET2GRID.Enabled = true
	cfg.NET2GRID.APIBase, cfg.NET2GRID.UsersBucket = i.NET2GRIDURL, "verify_net2grid_users"
	cfg.NET2GRID.ClientID, cfg.NET2GRID.ClientSecret = sandbox.NET2GRIDDemoClientID, secret.New(sandbox.NET2GRIDDemoClientSecret)
	cfg.GREX.Enabled = true
	cfg.GREX.APIBase, cfg.GREX.AuthorizeURL, cfg.GREX.TokenURL = i.GREXURL, i.GREXAuthorizeURL, i.GREXTokenURL
	cfg.GREX.ClientID, cfg.GREX.RedirectURI, cfg.GREX.Scope, cfg.GREX.Accounts = i.GREXClientID, i.GREXRedirectURI, i.GREXScope, i.GREXAccounts
	if err := cfg.Validate(); err != nil {
		t.Fatalf("reference configuration: %v", err)
	}
	log := slog.New(slog.DiscardHandler)

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
	for n := 1; n <= chaosUsers; n++ {
		entries = append(entries, net2grid.UserEntry{Email: sandbox.NET2GRIDDemoUser(n), Password: secret.New(sandbox.NET2GRIDDemoPassword)})
	}
	for _, res := range net2grid.Import(ctx, nopts, reg, entries) {
		if res.Err != nil {
			t.Fatalf("reference net2grid login: %v", res.Err)
		}
	}
	gopts, err := connector.GREXOptions(d)
	if err != nil {
		t.Fatal(err)
	}
	approve := func(ctx context.Context, authURL string) (string, error) {
		code, b, err := httpDo(ctx, "POST", r.control+"/_sandbox/grex/approve", authURL)
		if err != nil || code != 200 {
			return "", fmt.Errorf("approve: %d %v", code, err)
		}
		return string(b), nil
	}
	if err := grex.LoginWith(ctx, gopts, approve, io.Discard); err != nil {
		t.Fatalf("reference grex login: %v", err)
	}
	st.Close()

	tel, err := telemetry.Setup(ctx, telemetry.Options{NoGlobals: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	jobs := make(chan int, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- connector.Run(runCtx, connector.Options{Config: cfg, Log: log, Telemetry: tel, Started: func(rn connector.Running) { jobs <- rn.Jobs }})
	}()
	var n int
	select {
	case n = <-jobs:
	case err := <-errc:
		t.Fatalf("reference connector: %v", err)
	}
	eventually(t, 2*time.Minute, 200*time.Millisecond, "reference connector polls every job once", func() error {
		js := tel.Board.Jobs()
		done := 0
		var failing string
		for _, j := range js {
			if !j.LastSuccess.IsZero() {
				done++
			} else if j.LastError != "" {
				failing = j.ID + ": " + j.LastError
			}
		}
		if done < n {
			return fmt.Errorf("%d of %d jobs done (%s)", done, n, failing)
		}
		return nil
	})
	stop()
	if err := <-errc; err != nil {
		t.Fatalf("reference connector: %v", err)
	}
	want := ref{body: map[string]string{}, time: map[string]time.Time{}, horizon: horizons()}
	for _, e := range readStream(t, r.natsURL, "VERIFY") {
		k := entity(e.Subject, e.Header)
		want.body[k] = string(e.Data)
		want.time[k], _ = time.Parse(time.RFC3339Nano, e.Header.Get("ce-time"))
	}
	if len(want.body) == 0 {
		t.Fatal("the reference run published nothing")
	}
	return want
}

// knownSecrets are the values that must never leave the process: client secrets,
// passwords, the token key and every token the sandbox issued.
func knownSecrets(tokenKey string, tokens map[string]bool) []string {
	out := []string{
		sandbox.INGRIDDemoClientSecret, sandbox.NET2GRIDDemoClientSecret, sandbox.NET2GRIDDemoPassword, tokenKey,
	}
	for tk := range tokens {
		out = append(out, tk)
	}
	return out
}

// emailRE finds an e-mail address.
var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)

// scanText reports every secret found in text, and e-mail addresses.
func scanText(where, text string, secrets []string) []string {
	var leaks []string
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			leaks = append(leaks, fmt.Sprintf("%s holds secret %.8s…", where, s))
		}
	}
	if m := emailRE.FindString(text); m != "" {
		leaks = append(leaks, fmt.Sprintf("%s holds an e-mail address %q", where, m))
	}
	return leaks
}

// scanEvents scans every event's subject, headers and body.
func scanEvents(t *testing.T, url, stream string, secrets []string) []string {
	t.Helper()
	var leaks []string
	for _, e := range readStream(t, url, stream) {
		var b strings.Builder
		b.WriteString(e.Subject + "\n")
		for k, vs := range e.Header {
			b.WriteString(k + ": " + strings.Join(vs, ",") + "\n")
		}
		b.Write(e.Data)
		leaks = append(leaks, scanText("event on "+e.Subject, b.String(), secrets)...)
		if len(leaks) > 20 {
			break
		}
	}
	return leaks
}
