// Command connector is gridstream: it keeps NATS JetStream in sync with GRTgaz INGRID,
// NET2GRID and Grexel G-REX. This file only parses commands and wires packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/gridstream/gridstream/internal/config"
	"github.com/gridstream/gridstream/internal/connector"
	"github.com/gridstream/gridstream/internal/telemetry"

	_ "time/tzdata" // gas days are Europe/Paris; distroless images carry no zoneinfo
)

// version is set by the linker (-X main.version=...).
var version = "dev"

const usage = `usage: connector <command> [flags]

commands:
  run                      poll the configured upstreams and publish to NATS (GRIDSTREAM_* variables)
  demo [--for 10s]         embedded NATS + sandbox APIs, no credentials; prints events as they flow
  sandbox                  serve the sandbox INGRID, NET2GRID and G-REX APIs for manual trials
  login grex               interactive G-REX (Azure AD B2C, PKCE) login; saves the refresh token
  login net2grid --user E  NET2GRID password bootstrap for one end user (password read from stdin)
  users add|remove|list    manage the NET2GRID users polled
  check                    validate config, reach NATS, get a token and one page from each upstream
  backfill --source S --dataset D --from T1 --to T2
                           historical load through the same pipeline, within the quotas
  env                      print every configuration variable with its default (Markdown table)
  version                  print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = runConnector(ctx, stderr)
	case "demo":
		err = runDemo(ctx, args[1:], stdout, stderr)
	case "sandbox":
		err = runSandbox(ctx, args[1:], stdout)
	case "login":
		err = runLogin(ctx, args[1:], stdin, stdout, stderr)
	case "users":
		err = runUsers(ctx, args[1:], stdin, stdout, stderr)
	case "check":
		err = runCheck(ctx, stdout, stderr)
	case "backfill":
		err = runBackfill(ctx, args[1:], stdout, stderr)
	case "env":
		printEnv(stdout)
	case "version":
		fmt.Fprintln(stdout, "gridstream", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "connector: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 2
		}
		fmt.Fprintln(stderr, "connector:", err)
		return 1
	}
	return 0
}

// loadConfig reads and validates the environment, and makes the logger it asks for.
func loadConfig(stderr io.Writer) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load()
	if err != nil {
		return cfg, nil, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	log, err := telemetry.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, log, nil
}

func runConnector(ctx context.Context, stderr io.Writer) error {
	cfg, log, err := loadConfig(stderr)
	if err != nil {
		return err
	}
	log.Info("gridstream starting", "version", version)
	err = connector.Run(ctx, connector.Options{Config: cfg, Log: log, Version: version})
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// SIGTERM while starting (Kubernetes may stop a pod at any moment): nothing was
		// polled yet, so nothing is left to finish; a clean stop, not a failure.
		log.Info("gridstream stopped during start-up", "interrupted", err)
		return nil
	}
	return err
}

func printEnv(w io.Writer) {
	fmt.Fprintln(w, "| Variable | Default | Meaning |")
	fmt.Fprintln(w, "| --- | --- | --- |")
	for _, v := range config.Variables() {
		def := v.Default
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(w, "| `%s` | %s | %s |\n", v.Name, def, v.Meaning)
	}
}
