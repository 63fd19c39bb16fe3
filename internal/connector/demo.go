package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/pollers"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DemoOptions configure RunDemo.
type DemoOptions struct {
	// For stops the demo after this long (0: until ctx is cancelled).
	For time.Duration
	// Out gets a live line per published batch and the summary.
	Out io.Writer
	Log *slog.Logger
	// DataDir keeps the embedded JetStream store; a temporary directory when empty.
	DataDir string
	// Users is the number of NET2GRID demo end users.
	Users   int
	Version string
	// HTTPAddr serves the status page, /metrics and the probes (default 127.0.0.1:9090;
	// "127.0.0.1:0" picks a free port).
	HTTPAddr string
}

// DemoSummary is what a demo published.
type DemoSummary struct {
	Events, Subjects int
}

// demoContracts are the INGRID contracts the demo polls.
var demoContracts = []string{sandbox.INGRIDDemoContract, "GRTGAZ-DEMO-002"}

// RunDemo runs the whole connector against the sandbox APIs and an embedded NATS server,
// with no credentials: it logs the NET2GRID demo users and the G-REX demo operator in
// the way an operator would (password bootstrap, PKCE login), then polls every dataset
// and prints what it publishes.
func RunDemo(ctx context.Context, o DemoOptions) (DemoSummary, error) {
	log := o.Log
	dir := o.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "gridstream-demo-")
		if err != nil {
			return DemoSummary{}, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	users := o.Users
	if users <= 0 {
		users = sandbox.NET2GRIDDemoUsers
	}
	sb, err := sandbox.Start(sandbox.ServersOptions{
		INGRID:   sandbox.INGRIDOptions{Contracts: demoContracts},
		NET2GRID: sandbox.NET2GRIDOptions{DemoUsers: users},
	})
	if err != nil {
		return DemoSummary{}, err
	}
	defer sb.Close()
	srv, err := publish.StartEmbedded(dir)
	if err != nil {
		return DemoSummary{}, err
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()

	cfg := DemoConfig(sb, srv.ClientURL())
	if o.HTTPAddr != "" {
		cfg.HTTPAddr = o.HTTPAddr
	}
	if err := cfg.Validate(); err != nil {
		return DemoSummary{}, fmt.Errorf("demo configuration: %w", err)
	}
	fmt.Fprintf(o.Out, "demo: sandbox INGRID %s, NET2GRID %s, G-REX %s; embedded NATS %s (data in %s)\n",
		sb.INGRIDURL, sb.NET2GRIDURL, sb.GREXURL, srv.ClientURL(), dir)
	if err := demoLogins(ctx, cfg, sb, users, log, o.Out); err != nil {
		return DemoSummary{}, err
	}

	runCtx := ctx
	if o.For > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, o.For)
		defer cancel()
	}
	var mu sync.Mutex
	var pages, published, unchanged int
	// A heartbeat line, so that quiet minutes (upstream data changes slowly) still show the
	// pollers at work: re-polls that find nothing new publish nothing, by design.
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	go func() {
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
				mu.Lock()
				fmt.Fprintf(o.Out, "%s  demo: %d pages polled, %d events published, %d unchanged records skipped so far\n",
					time.Now().Format("15:04:05"), pages, published, unchanged)
				mu.Unlock()
			}
		}
	}()
	err = Run(runCtx, Options{
		Config: cfg, Log: log, Version: o.Version,
		Started: func(r Running) {
			fmt.Fprintf(o.Out, "demo: %d jobs running; status page http://%s/ ; consume with: nats --server %s sub 'energy.>'\n", r.Jobs, r.HTTPAddr, srv.ClientURL())
		},
		OnPage: func(job *pollers.Job, p pollers.PageResult) {
			mu.Lock()
			defer mu.Unlock()
			pages, published, unchanged = pages+1, published+p.Published, unchanged+p.Deduplicated
			if p.Published == 0 {
				return
			}
			fmt.Fprintf(o.Out, "%s  %-52s %4d records  %4d published  %4d unchanged\n",
				time.Now().Format("15:04:05"), p.Subject, p.Records, p.Published, p.Deduplicated)
		},
	})
	if err != nil {
		return DemoSummary{}, err
	}
	sum, err := streamSummary(srv.ClientURL(), cfg.Stream.Name)
	if err != nil {
		return sum, err
	}
	fmt.Fprintf(o.Out, "demo: published %d events on %d subjects\n", sum.Events, sum.Subjects)
	return sum, nil
}

// DemoConfig is the configuration that points every source at the sandbox.
func DemoConfig(sb *sandbox.Servers, natsURL string) config.Config {
	cfg := config.Defaults()
	cfg.NATS.URL = natsURL
	cfg.HTTPAddr = "127.0.0.1:9090"
	cfg.LogFormat = "text"
	// A fixed key, so a demo kept with --data can be run again; it protects only the
	// sandbox's demo tokens. Real deployments set GRIDSTREAM_TOKEN_KEY from a secret.
	key := sha256.Sum256([]byte("gridstream demo token key"))
	cfg.TokenKey = secret.New(hex.EncodeToString(key[:]))

	cfg.INGRID.Enabled = true
	cfg.INGRID.TokenURL = sb.INGRIDURL + "/oauth2/token"
	cfg.INGRID.APIBase = sb.INGRIDURL
	cfg.INGRID.ClientID = sandbox.INGRIDDemoClientID
	cfg.INGRID.ClientSecret = secret.New(sandbox.INGRIDDemoClientSecret)
	cfg.INGRID.Contracts = demoContracts

	cfg.NET2GRID.Enabled = true
	cfg.NET2GRID.APIBase = sb.NET2GRIDURL
	cfg.NET2GRID.ClientID = sandbox.NET2GRIDDemoClientID
	cfg.NET2GRID.ClientSecret = secret.New(sandbox.NET2GRIDDemoClientSecret)

	cfg.GREX.Enabled = true
	cfg.GREX.APIBase = sb.GREXURL
	cfg.GREX.AuthorizeURL = sb.GREXURL + sb.GREX.AuthorizePath()
	cfg.GREX.TokenURL = sb.GREXURL + sb.GREX.TokenPath()
	cfg.GREX.ClientID = sandbox.GREXDemoClientID
	cfg.GREX.RedirectURI = sandbox.GREXDemoRedirectURI
	cfg.GREX.Scope = sb.GREX.Scope()
	cfg.GREX.Accounts = strings.Split(sandbox.GREXDemoAccounts, ",")
	return cfg
}

// demoLogins does what an operator does once per deployment: the NET2GRID password
// bootstrap of each end user and the interactive G-REX login (approved by the sandbox).
func demoLogins(ctx context.Context, cfg config.Config, sb *sandbox.Servers, users int, log *slog.Logger, out io.Writer) error {
	st, err := OpenState(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	d := Deps{Config: cfg, State: st, Log: log}
	nopts, reg, err := NET2GRIDOptions(ctx, d)
	if err != nil {
		return err
	}
	var entries []net2grid.UserEntry
	for i := 1; i <= users; i++ {
		entries = append(entries, net2grid.UserEntry{Email: sandbox.NET2GRIDDemoUser(i), Password: secret.New(sandbox.NET2GRIDDemoPassword)})
	}
	for _, r := range net2grid.Import(ctx, nopts, reg, entries) {
		if r.Err != nil {
			return fmt.Errorf("net2grid demo login: %w", r.Err)
		}
	}
	fmt.Fprintf(out, "demo: %d NET2GRID users bootstrapped with the password grant (passwords not kept)\n", users)
	gopts, err := GREXOptions(d)
	if err != nil {
		return err
	}
	approve := func(_ context.Context, authURL string) (string, error) { return sb.GREX.Approve(authURL) }
	return grex.LoginWith(ctx, gopts, approve, out)
}

func streamSummary(url, stream string) (DemoSummary, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return DemoSummary{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return DemoSummary{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return DemoSummary{}, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	if err != nil {
		return DemoSummary{}, err
	}
	return DemoSummary{Events: int(info.State.Msgs), Subjects: len(info.State.Subjects)}, nil
}
