package verifier

import (
	"errors"
	"net/netip"
	"time"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// Code is the outcome of a verification; the codes, and the 401/403 rule
// (Code.Status), are defined once in package verdict.
type Code = verdict.Code

// Short names of the codes, for the verifier's own code and its tests.
const (
	CodeValid                   = verdict.Valid
	CodeInvalidFormat           = verdict.InvalidFormat
	CodeNotFound                = verdict.NotFound
	CodeRevoked                 = verdict.Revoked
	CodeDisabled                = verdict.Disabled
	CodeExpired                 = verdict.Expired
	CodeIPNotAllowed            = verdict.IPNotAllowed
	CodeTenantMismatch          = verdict.TenantMismatch
	CodeWorkspaceMismatch       = verdict.WorkspaceMismatch
	CodeInsufficientPermissions = verdict.InsufficientPermissions
)

// ErrUnavailable is returned when the Verifier cannot decide: Vault or the feed
// has been unreachable for longer than StaleIfError, or a needed lookup failed.
// Callers must fail closed (HTTP 503).
var ErrUnavailable = errors.New("verifier cannot decide: Vault or its change feed is unreachable")

// Request is one question to the Verifier.
type Request struct {
	// Key is the presented token. It is never stored, logged or returned.
	Key string
	// Tenant, when set, pins the answer: a key of another tenant is
	// TENANT_MISMATCH whatever its status, never VALID.
	Tenant string
	// Workspace, when set, must be one the key may act in.
	Workspace string
	// Permissions must each be granted by the key's effective permissions.
	Permissions []string
	// ClientIP is the end user's address; when the key, its role or its tenant
	// has CIDR lists, an invalid (zero) address is not allowed.
	ClientIP netip.Addr
}

// Verdict is a decided answer. Its slices and map are shared with the cache and
// must not be modified.
type Verdict struct {
	Code Code
	// KeyID is the presented key_id (public) unless the format was invalid.
	KeyID string
	// Tenant, Name, Role, Workspace, Permissions and ExpiresAt describe the
	// key; they are set only when the presented secret matched the key's
	// digest, and never for a key of another tenant than the pinned one.
	Tenant      string
	Name        string
	Role        string
	Workspace   string
	Permissions []string
	ExpiresAt   *time.Time
	// Metadata is set only when Code is VALID. It is shared with the cache:
	// read it, never modify it.
	Metadata map[string]string
	// FeedSeq is the change-feed position the Verifier had applied when it
	// answered (the audit line's feed_seq): every revocation, disable or
	// narrowing up to it was reflected (DESIGN §6).
	FeedSeq uint64
}

// Valid reports whether the key may make this request.
func (v Verdict) Valid() bool { return v.Code == CodeValid }
