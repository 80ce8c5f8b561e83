package verifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Defaults for ServerConfig fields left zero.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultShutdownTimeout = 10 * time.Second
)

// ServerConfig says how a Server listens.
type ServerConfig struct {
	// Listen is the address of the HTTP API.
	Listen string
	// MetricsListen, when set, is a listener of its own for GET /metrics, which
	// the API address then no longer serves.
	MetricsListen string
	// TLSCertFile and TLSKeyFile (both or neither) make both listeners HTTPS.
	// Reload re-reads them; open connections keep the certificate they began with.
	TLSCertFile string
	TLSKeyFile  string
	// ShutdownTimeout bounds the drain when Run stops.
	ShutdownTimeout time.Duration
	// Signals makes Run stop on SIGINT or SIGTERM and Reload on SIGHUP.
	Signals bool
}

// Server serves a Verifier over HTTP(S) and owns its lifecycle: Run starts the
// Verifier's background work, serves until told to stop, then drains in order.
type Server struct {
	v       *Verifier
	cfg     ServerConfig
	log     hclog.Logger
	cert    *certificate // nil without TLS
	api     *http.Server
	apiLn   net.Listener
	metrics *http.Server // nil when /metrics is served on the API listener
	metLn   net.Listener
}

// NewServer loads the TLS certificate and opens the listeners (so a ":0" port
// is known from Addr before Run). The Server owns v from here on: Run closes it.
func NewServer(v *Verifier, cfg ServerConfig) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("TLS needs both a certificate file and a key file")
	}
	s := &Server{v: v, cfg: cfg, log: v.log}
	if cfg.TLSCertFile != "" {
		var err error
		if s.cert, err = loadCertificate(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	var err error
	if s.apiLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.api = s.httpServer(v.handler(cfg.MetricsListen == ""))
	if cfg.MetricsListen != "" {
		if s.metLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			_ = s.apiLn.Close()
			return nil, fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsListen, err)
		}
		s.metrics = s.httpServer(v.MetricsHandler())
	}
	return s, nil
}

func (s *Server) httpServer(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          s.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	if s.cert != nil {
		srv.TLSConfig = s.cert.config()
	}
	return srv
}

// Addr is the API listener's address.
func (s *Server) Addr() net.Addr { return s.apiLn.Addr() }

// MetricsAddr is the metrics listener's address, or nil when there is none.
func (s *Server) MetricsAddr() net.Addr {
	if s.metLn == nil {
		return nil
	}
	return s.metLn.Addr()
}

// Reload re-reads the TLS certificate (keeping the old one if the new pair does
// not load) and reopens the audit log (after rotation).
func (s *Server) Reload() error {
	var errs []error
	if s.cert != nil {
		if err := s.cert.reload(); err != nil {
			errs = append(errs, err)
		} else {
			s.log.Info("TLS certificate reloaded", "cert", s.cfg.TLSCertFile)
		}
	}
	if err := s.v.ReopenAudit(); err != nil {
		errs = append(errs, fmt.Errorf("reopen the audit log: %w", err))
	}
	return errors.Join(errs...)
}

// Run serves until ctx is done (or a signal, with Signals), or a listener
// fails; then it drains: in-flight API requests finish, the Verifier's
// background work stops (sending its last usage report), the metrics listener
// closes, and the audit log is flushed and closed. It returns the listener's
// error, if one failed.
func (s *Server) Run(ctx context.Context) error {
	// The background work outlives the API by a little, whatever ctx says.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	ran := make(chan struct{})
	go func() { _ = s.v.Run(runCtx); close(ran) }()

	var sigs chan os.Signal
	if s.cfg.Signals {
		sigs = make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
	}
	failed := make(chan error, 2)
	s.serve(s.api, s.apiLn, failed)
	if s.metrics != nil {
		s.serve(s.metrics, s.metLn, failed)
	}
	s.logStart()

	var err error
wait:
	for {
		select {
		case <-ctx.Done():
			s.log.Info("shutting down")
			break wait
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if rerr := s.Reload(); rerr != nil {
					s.log.Error("reload failed; serving on with what was loaded", "error", rerr)
				}
				continue
			}
			s.log.Info("shutting down", "signal", sig.String())
			break wait
		case err = <-failed:
			s.log.Error("HTTP server stopped", "error", err)
			break wait
		}
	}

	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := s.api.Shutdown(dctx); serr != nil {
		s.log.Warn("in-flight requests did not finish in time", "error", serr)
	}
	stopRun()
	select {
	case <-ran:
	case <-dctx.Done():
		s.log.Warn("background work did not stop in time")
	}
	if s.metrics != nil {
		_ = s.metrics.Shutdown(dctx)
	}
	if cerr := s.v.Close(); cerr != nil {
		s.log.Error("cannot close the audit log", "error", cerr)
	}
	s.log.Info("stopped")
	return err
}

func (s *Server) serve(srv *http.Server, ln net.Listener, failed chan<- error) {
	go func() {
		var err error
		if s.cert != nil {
			err = srv.ServeTLS(ln, "", "") // the certificate comes from TLSConfig.GetCertificate
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
	}()
}

func (s *Server) logStart() {
	scheme := "http"
	if s.cert != nil {
		scheme = "https"
	}
	args := []any{"address", s.Addr().String(), "scheme", scheme, "version", Version,
		"vault", s.v.cfg.VaultAddrs, "mount", s.v.cfg.Mount}
	if m := s.MetricsAddr(); m != nil {
		args = append(args, "metrics", m.String())
	}
	s.log.Info("serving", args...)
	if len(s.v.cfg.TrustedProxies) == 0 {
		s.log.Warn("forward-auth (/v1/auth) is served with no -trusted-proxies: behind a proxy, every request " +
			"seems to come from the proxy's address, so CIDR-restricted keys are checked against it; " +
			"set -trusted-proxies to the proxies' addresses")
	}
}
