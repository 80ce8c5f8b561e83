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
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

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
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Error("cannot listen", "address", o.listen, "error", err)
		return 1
	}
	srv := &http.Server{
		Handler:           c.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	log.Info("serving", "url", scheme+"://"+ln.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- srv.ServeTLS(ln, o.tlsCert, o.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		log.Error("server stopped", "error", err)
		return 1
	case <-sig:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown", "error", err)
	}
	return 0
}
