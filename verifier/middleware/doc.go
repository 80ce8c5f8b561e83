// Package middleware protects net/http handlers of Go application servers with
// API keys checked by an apikeys-verifier.
//
//	c := middleware.NewClient("http://127.0.0.1:8080")
//	mux.Handle("/clusters", middleware.Middleware(c, middleware.RequirePermissions("clusters:read"))(h))
//
// Inside h, middleware.KeyFromContext(r.Context()) is the verified key (with its
// Tenant). RequireTenant or WithTenant pins the tenant a request must belong to.
// Requests without a valid key get 401, keys denied by tenant, address,
// workspace or permission 403, and everything is 503 when the verifier cannot answer (fail closed).
//
// A short local cache (WithCacheTTL, default 50ms) absorbs bursts; it is keyed by
// a SHA-256 digest of the request, so no token is kept, and its TTL adds to how
// long a revoked key keeps working here.
//
// The codes, the request and response shapes and the 401/403 rule are package
// verdict's, the same the verifier's forward-auth answers by.
//
// This package depends only on the standard library and package verdict. It must never log a token
// or put one in an error or a response.
package middleware
