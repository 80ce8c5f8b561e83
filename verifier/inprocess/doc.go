// Package inprocess checks API keys inside a Go server's own process: it runs
// the verifier library (verifier.New), which follows the plugin's change feed
// itself, and answers the verifier/middleware package's questions without a
// network hop. A cached key is decided in well under a microsecond, without
// allocating.
//
// Switching from the HTTP verifier changes one constructor:
//
//	c, err := inprocess.Start(verifier.Config{VaultAddrs: …, VaultTokenFile: …})
//	defer c.Close()
//	mux.Handle("/clusters", middleware.Middleware(c, middleware.RequirePermissions("clusters:read"))(h))
//
// middleware.KeyFromContext gives the verified key as before. Its Permissions,
// ExpiresAt and Metadata are shared with the verifier's cache: read them, never
// modify them. Decisions are not written to an audit log here (the
// apikeys-verifier service does that for HTTP checks); the verifier still
// reports usage to the plugin.
//
// The process needs the verifier's Vault policy (policies/verifier.hcl). Like
// the verifier, this package never logs a token or puts one in an error.
package inprocess
