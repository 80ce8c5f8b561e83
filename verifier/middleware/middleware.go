package middleware

import (
	"context"
	"encoding/json"
	"net"
	"net/http"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

type ctxKey struct{}

// KeyFromContext returns the verified key of a request that passed Middleware.
func KeyFromContext(ctx context.Context) (Key, bool) {
	k, ok := ctx.Value(ctxKey{}).(Key)
	return k, ok
}

// Option configures Middleware.
type Option func(*options)

type options struct {
	tenant      func(*http.Request) string
	workspace   func(*http.Request) string
	permissions func(*http.Request) []string
	clientIP    func(*http.Request) string
}

// RequireTenant pins every request to tenant: a key of another tenant is
// refused (403, TENANT_MISMATCH) whatever its status, never let through.
func RequireTenant(tenant string) Option {
	return func(o *options) { o.tenant = func(*http.Request) string { return tenant } }
}

// WithTenant derives the tenant a request must belong to (e.g. from its host
// or path; never from a header the client controls). "" pins nothing.
func WithTenant(fn func(*http.Request) string) Option {
	return func(o *options) { o.tenant = fn }
}

// RequirePermissions makes every request need all of perms.
func RequirePermissions(perms ...string) Option {
	return func(o *options) { o.permissions = func(*http.Request) []string { return perms } }
}

// WithPermissions derives the needed permissions from the request.
func WithPermissions(fn func(*http.Request) []string) Option {
	return func(o *options) { o.permissions = fn }
}

// WithWorkspace derives the workspace the request acts in (e.g. from its path).
func WithWorkspace(fn func(*http.Request) string) Option {
	return func(o *options) { o.workspace = fn }
}

// WithClientIP derives the end user's address; the default is the peer
// address. Behind a proxy, pass the address the proxy vouches for.
func WithClientIP(fn func(*http.Request) string) Option {
	return func(o *options) { o.clientIP = fn }
}

// Checker decides a Request: a *Client asks an apikeys-verifier over HTTP,
// verifier/inprocess runs the verifier library in this process.
type Checker interface {
	Verify(ctx context.Context, req Request) (Result, error)
}

// Middleware checks the request's key with c before next runs. The key comes
// from "Authorization: Bearer" or X-API-Key.
func Middleware(c Checker, opts ...Option) func(http.Handler) http.Handler {
	o := options{clientIP: peerIP}
	for _, opt := range opts {
		opt(&o)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, ok := TokenFromHeader(r.Header)
			if !ok {
				deny(w, http.StatusUnauthorized, "", "send the API key as Authorization: Bearer <key> or X-API-Key")
				return
			}
			req := Request{Key: key, ClientIP: o.clientIP(r)}
			if o.tenant != nil {
				req.Tenant = o.tenant(r)
			}
			if o.workspace != nil {
				req.Workspace = o.workspace(r)
			}
			if o.permissions != nil {
				req.Permissions = o.permissions(r)
			}
			res, err := c.Verify(r.Context(), req)
			if err != nil {
				deny(w, http.StatusServiceUnavailable, "", "the API key cannot be checked right now; retry later")
				return
			}
			// The same rule as the verifier's forward-auth: one definition.
			switch status := res.Code.Status(); status {
			case http.StatusOK:
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, res.Key)))
			case http.StatusForbidden:
				deny(w, status, res.Code, "this API key may not make this request")
			default:
				deny(w, status, res.Code, "the API key is not valid")
			}
		})
	}
}

func deny(w http.ResponseWriter, status int, code verdict.Code, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", verdict.WWWAuthenticate)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(verdict.ErrorResponse{Error: msg, Code: code})
}

// TokenFromHeader finds the presented API key: "Authorization: Bearer <key>"
// first, then X-API-Key (verdict.TokenFromHeader).
func TokenFromHeader(h http.Header) (string, bool) { return verdict.TokenFromHeader(h) }

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}
