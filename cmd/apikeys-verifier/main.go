// Command apikeys-verifier serves the vault-apikeys verification API: it parses
// flags (and their APIKEYS_VERIFIER_* environment equivalents) and runs a
// verifier.Server, which stops gracefully on SIGINT or SIGTERM and reloads the
// TLS certificate and reopens the audit log on SIGHUP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/verifier"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its exit code: 2 for a bad configuration, 1 when serving fails.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "apikeys-verifier:", err)
		return 2
	}
	if o.version {
		fmt.Fprintf(stdout, "apikeys-verifier %s (%s)\n", verifier.Version, runtime.Version())
		return 0
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name: "apikeys-verifier", Output: stderr, JSONFormat: o.logFormat == "json",
		Level: hclog.LevelFromString(o.logLevel),
	})
	o.cfg.Logger = log
	v, err := verifier.New(o.cfg)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 2
	}
	o.server.Signals = true
	srv, err := verifier.NewServer(v, o.server)
	if err != nil {
		_ = v.Close()
		log.Error("cannot serve", "error", err)
		return 1
	}
	if err := srv.Run(context.Background()); err != nil {
		return 1
	}
	return 0
}
