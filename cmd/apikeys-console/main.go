// Command apikeys-console serves the tenant admins' web console (DESIGN §8):
// it parses flags (and their APIKEYS_CONSOLE_* environment equivalents), runs
// a console.Console, and shuts down gracefully on SIGINT or SIGTERM, revoking
// the Vault tokens of open sessions.
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

	"github.com/vault-apikeys/vault-apikeys/console"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	o, err := parseFlags(args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "apikeys-console:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("service", "apikeys-console")
	o.cfg.Logger = log
	c, err := console.New(o.cfg)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 2
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := c.Serve(ctx, console.ServeConfig{Listen: o.listen, TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey}); err != nil {
		log.Error("cannot serve", "error", err)
		return 1
	}
	return 0
}
