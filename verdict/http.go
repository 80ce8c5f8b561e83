package verdict

import (
	"net/http"
	"strings"
	"time"
)

// Paths the verifier serves. Forward-auth also answers any path below PathAuth
// (Envoy ext_authz sends /v1/auth/<original path>).
const (
	PathVerify = "/v1/verify"
	PathAuth   = "/v1/auth"
)

// Request headers: where a key is presented, and (forward-auth) the
// requirements a proxy sets or overwrites. The requirement header names are the
// verifier's defaults; operators may configure others.
const (
	HeaderAuthorization = "Authorization"
	HeaderAPIKey        = "X-API-Key"
	HeaderTenant        = "X-Apikey-Tenant"
	HeaderWorkspace     = "X-Apikey-Workspace"
	HeaderPermissions   = "X-Apikey-Permissions"
)

// Response headers of forward-auth. HeaderTenant and HeaderWorkspace are set
// too, to the key's values, when the answer is 200.
const (
	HeaderKeyID = "X-Apikey-Id"
	HeaderName  = "X-Apikey-Name"
	HeaderRole  = "X-Apikey-Role"
	HeaderCode  = "X-Apikey-Code"
)

// WWWAuthenticate is the challenge of every 401 (RFC 6750).
const WWWAuthenticate = `Bearer error="invalid_token"`

// UnavailableMessage is the whole error text of every 503: what went wrong
// inside (Vault addresses, Vault's error text) is logged, never answered.
const UnavailableMessage = "verifier cannot decide right now"

// VerifyRequest is the body of POST /v1/verify.
type VerifyRequest struct {
	// Key is the presented token. Never log it.
	Key string `json:"key"`
	// Tenant, when set, pins the answer to that tenant.
	Tenant string `json:"tenant,omitempty"`
	// Workspace, when set, must be one the key may act in.
	Workspace string `json:"workspace,omitempty"`
	// Permissions must each be granted to the key.
	Permissions []string `json:"permissions,omitempty"`
	// ClientIP is the end user's address (default: the caller's).
	ClientIP string `json:"client_ip,omitempty"`
}

// VerifyResponse is the answer of POST /v1/verify (always 200 when decided).
type VerifyResponse struct {
	Valid       bool              `json:"valid"`
	Code        Code              `json:"code"`
	KeyID       string            `json:"key_id"`
	Tenant      string            `json:"tenant,omitempty"`
	Name        string            `json:"name"`
	Role        string            `json:"role"`
	Workspace   string            `json:"workspace"`
	Permissions []string          `json:"permissions"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	Metadata    map[string]string `json:"metadata,omitempty"` // only when valid
}

// ErrorResponse is the body of every 4xx and 5xx answer. Error never quotes
// the request (which holds a key) nor anything internal.
type ErrorResponse struct {
	Error string `json:"error"`
	// Code is set when a decided code caused the error (forward-auth 401/403).
	Code Code `json:"code,omitempty"`
}

// TokenFromHeader finds the presented API key: "Authorization: Bearer <key>"
// (scheme case-insensitive) first, then X-API-Key.
func TokenFromHeader(h http.Header) (string, bool) {
	if a := h.Get(HeaderAuthorization); a != "" {
		scheme, rest, found := strings.Cut(strings.TrimSpace(a), " ")
		if found && strings.EqualFold(scheme, "Bearer") {
			if t := strings.TrimSpace(rest); t != "" {
				return t, true
			}
		}
	}
	if t := strings.TrimSpace(h.Get(HeaderAPIKey)); t != "" {
		return t, true
	}
	return "", false
}
