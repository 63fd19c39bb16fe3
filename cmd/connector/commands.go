package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/connector"
	"github.com/gridstream/gridstream/internal/pollers/grex"
	"github.com/gridstream/gridstream/internal/pollers/net2grid"
	"github.com/gridstream/gridstream/internal/sandbox"
	"github.com/gridstream/gridstream/internal/secret"
	"github.com/gridstream/gridstream/internal/telemetry"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dur := fs.Duration("for", 0, "run this long, print a summary and exit (0: until Ctrl-C)")
	data := fs.String("data", "", "keep the embedded NATS JetStream data in this directory (default: a temporary one)")
	users := fs.Int("users", sandbox.NET2GRIDDemoUsers, "NET2GRID demo end users")
	addr := fs.String("http", "127.0.0.1:9090", "status page, /metrics and probes (127.0.0.1:0 picks a free port)")
	level := fs.String("log-level", "warn", "log level (the live lines go to stdout either way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := telemetry.NewLogger(stderr, *level, "text")
	if err != nil {
		return err
	}
	_, err = connector.RunDemo(ctx, connector.DemoOptions{
		For: *dur, Out: stdout, Log: log, DataDir: *data, Users: *users, Version: version, HTTPAddr: *addr,
	})
	return err
}

func runSandbox(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "address to listen on")
	ip := fs.Int("ingrid-port", 8081, "INGRID port (0 picks a free port)")
	np := fs.Int("net2grid-port", 8082, "NET2GRID port (0 picks a free port)")
	gp := fs.Int("grex-port", 8083, "G-REX port (0 picks a free port)")
	users := fs.Int("users", sandbox.NET2GRIDDemoUsers, "NET2GRID demo end users")
	control := fs.String("control", "", "serve the control API (/_sandbox/faults, /_sandbox/counters, ...) on this address, e.g. 127.0.0.1:8089; empty: off")
	faults := fs.String("faults", "off", "fault profile at start: off, or chaos (5xx, timeouts, truncated bodies, HTML pages, 429 with Retry-After)")
	seed := fs.Uint64("seed", 0, "seed of the fault dice (0: the fixed default)")
	grexMin := fs.Int("grex-per-minute", sandbox.GREXDefaultPerMinute, "G-REX fair use: requests per sliding minute")
	grexHour := fs.Int("grex-per-hour", sandbox.GREXDefaultPerHour, "G-REX fair use: requests per sliding hour")
	contracts := fs.String("ingrid-contracts", "", "INGRID contracts served, comma-separated (default: the demo contract)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	clock := &sandbox.ControlClock{}
	var ic []string
	if *contracts != "" {
		ic = strings.Split(*contracts, ",")
	}
	sb, err := sandbox.Start(sandbox.ServersOptions{
		Host: *host, INGRIDPort: *ip, NET2GRIDPort: *np, GREXPort: *gp,
		INGRID:   sandbox.INGRIDOptions{Clock: clock, Contracts: ic},
		NET2GRID: sandbox.NET2GRIDOptions{Clock: clock, DemoUsers: *users},
		GREX:     sandbox.GREXOptions{Clock: clock, ManualApproval: true, PerMinute: *grexMin, PerHour: *grexHour},
	})
	if err != nil {
		return err
	}
	defer sb.Close()
	if *seed != 0 {
		sb.SeedFaults(*seed)
	}
	switch *faults {
	case "off":
	case "chaos":
		if err := sb.SetFaults(sandbox.ChaosFaults()); err != nil {
			return err
		}
	default:
		return fmt.Errorf("sandbox: --faults %q: off or chaos", *faults)
	}
	fmt.Fprintf(stdout, `gridstream sandbox (fake upstreams with demo credentials)
  INGRID    %[1]s   token %[1]s/oauth2/token   client %[4]s / %[5]s   contract %[6]s
  NET2GRID  %[2]s   token %[2]s/v2/token   client %[7]s   users %[8]s .. (password %[9]s)
  G-REX     %[3]s   authorize %[3]s%[10]s   client %[11]s   accounts %[12]s
`, sb.INGRIDURL, sb.NET2GRIDURL, sb.GREXURL, sandbox.INGRIDDemoClientID, sandbox.INGRIDDemoClientSecret, sandbox.INGRIDDemoContract,
		sandbox.NET2GRIDDemoClientID, sandbox.NET2GRIDDemoUser(1), sandbox.NET2GRIDDemoPassword,
		sb.GREX.AuthorizePath(), sandbox.GREXDemoClientID, sandbox.GREXDemoAccounts)
	if *control != "" {
		u, err := sb.ServeControl(*control, clock)
		if err != nil {
			return fmt.Errorf("sandbox: --control %s: %w", *control, err)
		}
		fmt.Fprintf(stdout, "  control   %s   faults %s   (GET /_sandbox/counters, PUT /_sandbox/faults/{upstream}/{endpoint})\n", u, *faults)
	}
	fmt.Fprintln(stdout, "Ctrl-C stops.")
	<-ctx.Done()
	return nil
}

// openForCommand loads the configuration without requiring a source to be enabled
// (login and users commands only need NATS and the token key) and opens the state.
func openForCommand(ctx context.Context, stderr io.Writer) (config.Config, *slog.Logger, *connector.State, error) {
	cfg, err := config.Load()
	if err != nil {
		return cfg, nil, nil, err
	}
	log, err := telemetry.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return cfg, nil, nil, err
	}
	if cfg.TokenKey.IsZero() {
		return cfg, nil, nil, errors.New("GRIDSTREAM_TOKEN_KEY: required to store refresh tokens encrypted (32 bytes, hex or base64)")
	}
	st, err := connector.OpenState(ctx, cfg, log)
	if err != nil {
		return cfg, nil, nil, err
	}
	return cfg, log, st, nil
}

func runLogin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("login: which upstream? `login grex` or `login net2grid --user EMAIL`")
	}
	switch args[0] {
	case "grex":
		cfg, log, st, err := openForCommand(ctx, stderr)
		if err != nil {
			return err
		}
		defer st.Close()
		opts, err := connector.GREXOptions(connector.Deps{Config: cfg, State: st, Log: log, Version: version})
		if err != nil {
			return err
		}
		return grex.Login(ctx, opts, stdin, stdout)
	case "net2grid":
		fs := flag.NewFlagSet("login net2grid", flag.ContinueOnError)
		fs.SetOutput(stderr)
		user := fs.String("user", "", "the end user's e-mail address")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *user == "" {
			return errors.New("login net2grid: --user EMAIL is required (the password is read from stdin)")
		}
		fmt.Fprintf(stderr, "password for %s (read from stdin, used once, never stored): ", *user)
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read password: %w", err)
		}
		password := secret.New(strings.TrimRight(line, "\r\n"))
		if password.IsZero() {
			return errors.New("login net2grid: empty password")
		}
		cfg, log, st, err := openForCommand(ctx, stderr)
		if err != nil {
			return err
		}
		defer st.Close()
		opts, _, err := connector.NET2GRIDOptions(ctx, connector.Deps{Config: cfg, State: st, Log: log, Version: version})
		if err != nil {
			return err
		}
		u, err := net2grid.Login(ctx, opts, *user, password)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "net2grid: user %s logged in; refresh token stored encrypted; the password was not kept\n", u.ID)
		return nil
	}
	return fmt.Errorf("login: unknown upstream %q (grex or net2grid)", args[0])
}

func runUsers(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("users: add EMAIL | remove EMAIL-OR-ID | list | import FILE|-")
	}
	cfg, log, st, err := openForCommand(ctx, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	opts, reg, err := connector.NET2GRIDOptions(ctx, connector.Deps{Config: cfg, State: st, Log: log, Version: version})
	if err != nil {
		return err
	}
	switch {
	case args[0] == "add" && len(args) == 2:
		u, err := reg.Add(ctx, args[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s (log in with: connector login net2grid --user ...)\n", u.ID)
	case args[0] == "remove" && len(args) == 2:
		if err := net2grid.RemoveUser(ctx, opts.TokenStore, reg, args[1]); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "removed, with its stored refresh token")
	case args[0] == "list":
		list, err := reg.List(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tINSTALLATIONS\tADDED")
		for _, u := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", u.ID, len(u.Installations), u.AddedAt.Format(time.RFC3339))
		}
		return tw.Flush()
	case args[0] == "import" && len(args) == 2:
		in := stdin
		if args[1] != "-" {
			f, err := openFile(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			in = f
		}
		entries, err := net2grid.ReadUserFile(in)
		if err != nil {
			return err
		}
		failed := 0
		for _, r := range net2grid.Import(ctx, opts, reg, entries) {
			switch {
			case r.Err != nil:
				failed++
				fmt.Fprintf(stdout, "%s  failed: %v\n", r.ID, r.Err)
			case r.LoggedIn:
				fmt.Fprintf(stdout, "%s  logged in\n", r.ID)
			default:
				fmt.Fprintf(stdout, "%s  added (needs a login)\n", r.ID)
			}
		}
		if failed > 0 {
			return fmt.Errorf("users import: %d of %d failed", failed, len(entries))
		}
		fmt.Fprintln(stdout, "done: delete the file now if it holds passwords; gridstream keeps only refresh tokens")
	default:
		return errors.New("users: add EMAIL | remove EMAIL-OR-ID | list | import FILE|-")
	}
	return nil
}
