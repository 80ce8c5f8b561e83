// Command apikeys-verifier serves the vault-apikeys verification API: it parses
// flags (and their APIKEYS_VERIFIER_* environment equivalents), runs a
// verifier.Verifier, and shuts down gracefully on SIGINT or SIGTERM. SIGHUP
// reopens the audit log.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/verifier"
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
		fmt.Fprintln(stderr, "apikeys-verifier:", err)
		return 2
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
	defer v.Close()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Error("cannot listen", "address", o.listen, "error", err)
		return 1
	}
	srv := &http.Server{
		Handler:           v.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}

	// The verifier's background work outlives the HTTP server by a little:
	// requests drain first, then the last usage report is sent.
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = v.Run(runCtx); close(ran) }()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("serving", "address", ln.Addr().String(), "vault", o.cfg.VaultAddrs, "mount", o.cfg.Mount)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	code := 0
wait:
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGHUP {
				if err := v.ReopenAudit(); err != nil {
					log.Error("cannot reopen the audit log", "error", err)
				} else {
					log.Info("audit log reopened")
				}
				continue
			}
			log.Info("shutting down", "signal", s.String())
			break wait
		case err := <-served:
			log.Error("HTTP server stopped", "error", err)
			code = 1
			break wait
		}
	}
	signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("in-flight requests did not finish in time", "error", err)
	}
	stopRun()
	select {
	case <-ran:
	case <-ctx.Done():
		log.Warn("background work did not stop in time")
	}
	log.Info("stopped")
	return code
}
