package verifier

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"time"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// cachedKey is a cached lookup answer, prepared so that deciding a request
// needs no parsing and no allocation. It is kept small (128 bytes, see
// TestCachedKeyStaysSmall) because a verifier holds a million of them: what
// keys of one role repeat lives in a shared grants block, what keys of one
// tenant repeat in a shared tenant block, what most keys lack (own CIDR list,
// metadata) behind one pointer that is nil for them, and nothing of the wire
// entry that deciding does not read is kept. The feed position of the lookup
// travels beside the cached key (resolved.seq), not in it.
type cachedKey struct {
	keyID string
	name  string
	// grants is shared by every key with the same role, workspace, effective
	// permissions, role lists and creator role; nil only for a NOT_FOUND answer.
	grants *grants
	// tenant is shared by every key of the tenant (with the same tenant-wide
	// list); nil for a NOT_FOUND answer and for an entry naming no tenant.
	// Not part of grants: a role's block stays shared across 100,000 tenants.
	tenant *tenantBlock
	extra  *keyExtra // nil when the key has neither its own CIDRs nor metadata
	// expiresAt is the key's expires_at as the lookup answered it; verdicts
	// point at it (ExpiresAt), so it is kept as a time and not as nanoseconds.
	expiresAt time.Time
	// loaded is when the lookup was answered (unix nanoseconds): a key older
	// than Config.MaxAge is not answered from the cache.
	loaded int64
	// digest is the opened SHA-256(key_id ‖ secret); hasDigest is false for
	// unknown ids and for tombstones kept without their sealed digest.
	digest    [sha256.Size]byte
	hasDigest bool
	hasExpiry bool // expires_at was present (expiresAt may still be zero: never)
	status    keyStatus
}

// keyStatus is the status of a cached key in one byte.
type keyStatus uint8

const (
	statusActive keyStatus = iota
	statusDisabled
	statusExpired
	statusRevoked
	statusNotFound
)

// refusal is the code each status answers; "" for an active key.
var refusal = [...]Code{
	statusActive: "", statusDisabled: CodeDisabled, statusExpired: CodeExpired,
	statusRevoked: CodeRevoked, statusNotFound: CodeNotFound,
}

var statusOf = map[string]keyStatus{
	wire.StatusActive: statusActive, wire.StatusDisabled: statusDisabled, wire.StatusExpired: statusExpired,
	wire.StatusRevoked: statusRevoked, wire.StatusNotFound: statusNotFound,
}

// grants is what deciding reads of a key's role: entry holds only Role,
// Workspace, Permissions, AllowedWorkspaces and CreatorRole, so that the
// workspace rule is wire.Entry.WorkspaceGrants itself. Shared between keys:
// never modified.
type grants struct {
	entry    wire.Entry
	roleNets []netip.Prefix
}

// tenantBlock is what deciding reads of a key's tenant: its name and its
// tenant-wide address list (an entry that does not parse matches nothing).
// Shared between keys: never modified.
type tenantBlock struct {
	name string
	nets []netip.Prefix
}

// keyExtra is what only some keys have.
type keyExtra struct {
	// keyNets is the key's own parsed CIDR list; an entry that does not parse
	// matches nothing, so a bad list denies rather than allows.
	keyNets  []netip.Prefix
	metadata map[string]string
}

// newCachedKey prepares e. dek is the unwrapped data key of e.Sealed (nil when
// e has no sealed digest).
func newCachedKey(e wire.Entry, dek []byte) (*cachedKey, error) {
	st, ok := statusOf[e.Status]
	if !ok {
		return nil, fmt.Errorf("lookup of key %s: unknown status %q", e.KeyID, e.Status)
	}
	r := &cachedKey{keyID: e.KeyID, status: st}
	if st == statusNotFound {
		return r, nil
	}
	if e.Sealed != nil {
		if dek == nil {
			return nil, fmt.Errorf("lookup of key %s: its data key could not be unwrapped", e.KeyID)
		}
		d, err := envelope.Open(dek, *e.Sealed, envelope.AAD(e.MountID, e.KeyID))
		if err != nil {
			return nil, fmt.Errorf("open sealed digest of key %s: %w", e.KeyID, err)
		}
		if len(d) != sha256.Size {
			return nil, fmt.Errorf("sealed digest of key %s has %d bytes, want %d", e.KeyID, len(d), sha256.Size)
		}
		copy(r.digest[:], d)
		r.hasDigest = true
	} else if st == statusActive {
		return nil, fmt.Errorf("lookup of active key %s carries no sealed digest", e.KeyID)
	}
	r.name = e.Name
	if e.ExpiresAt != nil {
		r.expiresAt, r.hasExpiry = *e.ExpiresAt, true
	}
	r.grants = repeated.grantsOf(&e)
	r.tenant = repeated.tenantOf(&e)
	if len(e.AllowedCIDRs) > 0 || e.Metadata != nil {
		r.extra = &keyExtra{keyNets: parseNets(e.AllowedCIDRs), metadata: repeated.metadata(e.Metadata)}
	}
	return r, nil
}

// revoked is r as a lookup of its revoked record answers it (the plugin's
// entryFor): the same key, name, tenant, role, workspace, creator role, expiry
// and digest, so a wrong secret still answers NOT_FOUND, and none of what a
// revoked entry leaves out (permissions, role lists, address lists, metadata).
// loaded stays r's: the fields kept are as old as r's lookup, so max-age ends
// them when it would have ended r. r is a found key (not a NOT_FOUND answer).
func (r *cachedKey) revoked() *cachedKey {
	e := wire.Entry{KeyID: r.keyID, Status: wire.StatusRevoked, Name: r.name, Tenant: r.tenantName(),
		Role: r.role(), Workspace: r.grants.entry.Workspace, CreatorRole: r.creatorRole()}
	return &cachedKey{
		keyID: r.keyID, name: r.name, grants: repeated.grantsOf(&e), tenant: repeated.tenantOf(&e),
		expiresAt: r.expiresAt, hasExpiry: r.hasExpiry, loaded: r.loaded,
		digest: r.digest, hasDigest: r.hasDigest, status: statusRevoked,
	}
}

// role is the key's role name ("" for a NOT_FOUND answer).
func (r *cachedKey) role() string {
	if r.grants == nil {
		return ""
	}
	return r.grants.entry.Role
}

// creatorRole is the platform role capping the key's permissions ("" for none).
func (r *cachedKey) creatorRole() string {
	if r.grants == nil {
		return ""
	}
	return r.grants.entry.CreatorRole
}

// tenantName is the key's tenant ("" for a NOT_FOUND answer or an entry naming none).
func (r *cachedKey) tenantName() string {
	if r.tenant == nil {
		return ""
	}
	return r.tenant.name
}

func parseNets(list []string) []netip.Prefix {
	if len(list) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, ok := parsePrefix(s)
		if !ok {
			p = netip.Prefix{} // invalid: Contains is always false
		}
		out = append(out, p)
	}
	return out
}

// decide answers req for a token whose digest is d, in the order of DESIGN §6:
// digest, tenant, status, expiry, client address, workspace, permissions.
func (r *cachedKey) decide(d *[sha256.Size]byte, req *Request, now time.Time) Verdict {
	// A secret that does not match is answered as if the key did not exist, so a
	// forged token learns nothing about a real key_id. The cache finds keys by
	// key_id: this comparison is what proves the caller holds the secret.
	if r.status == statusNotFound || (r.hasDigest && !token.Equal(r.digest[:], d[:])) {
		return Verdict{Code: CodeNotFound, KeyID: r.keyID}
	}
	mismatch := req.Tenant != "" && req.Tenant != r.tenantName()
	status := refusal[r.status]
	if !r.hasDigest {
		// A tombstone without its digest: nothing proves the caller holds the
		// secret, so a key of another tenant is, for the pinned one, no key at
		// all (its existence and status stay that tenant's). Otherwise refuse
		// and describe nothing.
		if mismatch {
			return Verdict{Code: CodeNotFound, KeyID: r.keyID}
		}
		return Verdict{Code: status, KeyID: r.keyID}
	}
	if mismatch {
		// Checked before the status, so that a revoked, disabled or expired key
		// of another tenant answers as an active one does; and described no
		// further: the asking tenant learns nothing of another tenant's key.
		return Verdict{Code: CodeTenantMismatch, KeyID: r.keyID}
	}
	g := &r.grants.entry
	v := Verdict{
		KeyID: r.keyID, Tenant: r.tenantName(), Name: r.name, Role: g.Role, Workspace: g.Workspace, Permissions: g.Permissions,
	}
	if r.hasExpiry {
		v.ExpiresAt = &r.expiresAt
	}
	var keyNets, tenantNets []netip.Prefix
	if r.extra != nil {
		keyNets = r.extra.keyNets
	}
	if r.tenant != nil {
		tenantNets = r.tenant.nets
	}
	switch {
	case status != "":
		v.Code = status
	case r.hasExpiry && !r.expiresAt.IsZero() && now.UnixNano() >= r.expiresAt.UnixNano():
		v.Code = CodeExpired
	case !allowedFrom(keyNets, req.ClientIP) || !allowedFrom(r.grants.roleNets, req.ClientIP) ||
		!allowedFrom(tenantNets, req.ClientIP):
		v.Code = CodeIPNotAllowed
	case !g.WorkspaceGrants(req.Workspace):
		v.Code = CodeWorkspaceMismatch
	case !grantsAll(g.Permissions, req.Permissions):
		v.Code = CodeInsufficientPermissions
	default:
		v.Code = CodeValid
		if r.extra != nil {
			v.Metadata = r.extra.metadata
		}
		if v.Workspace == "" {
			// A tenant-wide key acting in the workspace it asked for.
			v.Workspace = req.Workspace
		}
	}
	return v
}

// allowedFrom reports whether ip is in one of nets; an empty list allows all.
func allowedFrom(nets []netip.Prefix, ip netip.Addr) bool {
	if len(nets) == 0 {
		return true
	}
	ip = ip.Unmap()
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func grantsAll(grants, want []string) bool {
	for _, p := range want {
		if !wire.Granted(grants, p) {
			return false
		}
	}
	return true
}
