// Package verifier answers "is this API key good for this request?" for
// vault-apikeys, fast and fail-closed.
//
// A Verifier checks a token's format and checksum offline, then answers from an
// in-memory cache keyed by the token's SHA-256 digest; on a miss it asks the
// plugin's `lookup` path (coalesced per key_id, batched across keys, bounded in
// flight) and opens the sealed digest with a data key unwrapped by transit. It
// follows the plugin's `changes` feed by long-poll and evicts on every change, so
// a revocation, disable or role downgrade takes effect at once (a role change
// also drops the keys its holders created, whose permissions it caps; a tenant
// or allow-list change drops the tenant's keys; a revocation, being final,
// leaves a cached key in its revoked form, so the next check refuses without a
// lookup); a lookup that raced a change never puts the stale answer back (see
// cache.go).
//
// One Verifier serves every tenant of a mount. A request may pin a tenant
// (Request.Tenant, the verify body's "tenant", forward-auth's X-Apikey-Tenant
// set by the proxy): a key of another tenant is then TENANT_MISMATCH whatever
// its status, decided after the secret is checked, so a forged secret still
// answers NOT_FOUND and no tenant learns of another's keys. When the feed has
// not been reached for StaleIfError, every answer is ErrUnavailable (HTTP 503).
//
// Freshness (DESIGN §6, see follower.go): while Vault's feed head is beyond what the
// Verifier has applied (a restart, an outage, a pause, a backlog), it answers by
// lookup instead of from the cache; every cached record is also refreshed in the
// background before MaxAge. Unknown keys cannot evict known ones nor starve their
// lookups (see flood.go).
//
// Use it as a library (New, then Run and Check or Handler), serve it with
// NewServer and Server.Run (TLS with certificate reload, an optional metrics
// listener, graceful drain), or run cmd/apikeys-verifier, which does only that.
// Its HTTP contract (codes, shapes, headers, the 401/403 rule) is package
// verdict, shared with verifier/middleware.
//
// This package must never log, audit, export as a metric, or put in an error a
// token or its secret: only the public key_id leaves a Verifier. It keeps no
// plaintext token in memory beyond the request that presented it.
package verifier
