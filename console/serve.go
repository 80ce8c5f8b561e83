package console

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// ServeConfig says where and how the console listens.
type ServeConfig struct {
	Listen string
	// TLSCertFile and TLSKeyFile, both or neither: without them the console
	// serves plain HTTP, fit for loopback only.
	TLSCertFile, TLSKeyFile string
}

// shutdownTimeout is how long a graceful shutdown waits for requests in flight.
const shutdownTimeout = 10 * time.Second

// Serve serves the console on cfg.Listen until ctx is done, then shuts the
// server down gracefully; it returns nil then, and the error when the server
// cannot listen or stops on its own. The caller closes the Console afterwards
// (which revokes the Vault tokens of open sessions).
func (c *Console) Serve(ctx context.Context, cfg ServeConfig) error {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
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
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	c.log.Info("serving", "url", scheme+"://"+ln.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		c.log.Warn("shutdown", "error", err)
	}
	return nil
}
