package inprocess

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/vault-apikeys/vault-apikeys/verifier"
	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

// Checker is a verifier running in this process. It implements
// middleware.Checker.
type Checker struct {
	v      *verifier.Verifier
	cancel context.CancelFunc
	done   chan struct{}
}

var _ middleware.Checker = (*Checker)(nil)

// Start builds a verifier from cfg and runs it (login, feed, usage reports)
// until Close. Checks made before its first feed poll wait for it, bounded by
// cfg.VaultTimeout, then fail closed.
func Start(cfg verifier.Config) (*Checker, error) {
	v, err := verifier.New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Checker{v: v, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = v.Run(ctx) // fails only when already running, which a fresh verifier is not
	}()
	return c, nil
}

// Close stops following the feed, sends the last usage report and releases
// the verifier. Checks after Close fail closed once stale-if-error runs out.
func (c *Checker) Close() error {
	c.cancel()
	<-c.done
	return c.v.Close()
}

// Status reports whether the verifier follows the feed (for a readiness probe).
func (c *Checker) Status() verifier.Status { return c.v.Status() }

// Verify decides req in this process. An error wraps
// middleware.ErrUnavailable: fail closed. A cached key costs no allocation.
func (c *Checker) Verify(ctx context.Context, req middleware.Request) (middleware.Result, error) {
	// An address that does not parse stays the zero Addr, which a key or role
	// with CIDR lists does not allow (the verifier fails closed on it).
	ip, _ := netip.ParseAddr(req.ClientIP)
	v, err := c.v.Check(ctx, verifier.Request{Key: req.Key, Tenant: req.Tenant, Workspace: req.Workspace,
		Permissions: req.Permissions, ClientIP: ip.Unmap()})
	if err != nil {
		return middleware.Result{}, fmt.Errorf("%w: %v", middleware.ErrUnavailable, err)
	}
	return middleware.Result{
		Valid: v.Valid(),
		Code:  v.Code,
		Key: middleware.Key{
			ID: v.KeyID, Tenant: v.Tenant, Name: v.Name, Role: v.Role, Workspace: v.Workspace,
			Permissions: v.Permissions, ExpiresAt: v.ExpiresAt, Metadata: v.Metadata,
		},
	}, nil
}

// Middleware is middleware.Middleware checking in this process: the same
// options, answers (401, 403, 503) and request context.
func Middleware(c *Checker, opts ...middleware.Option) func(http.Handler) http.Handler {
	return middleware.Middleware(c, opts...)
}
