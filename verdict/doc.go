// Package verdict is the verifier's HTTP contract (DESIGN §6), written once: the
// codes a decision carries, the POST /v1/verify request and response shapes, the
// forward-auth header names, how a presented key is found in request headers,
// and the rule that maps a code to an HTTP status (200, 401 or 403).
//
// The verifier (which answers) and verifier/middleware (which asks) both use it,
// so a new code cannot mean 403 on one side and 401 on the other.
//
// It imports only the standard library and nothing else of ours (internal/layout
// enforces this): applications that call a verifier over HTTP link no more than
// this. It must never log, nor put in an error, a presented key.
package verdict
