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

// record is a cached lookup answer, prepared so that deciding a request needs
// no parsing and no allocation.
type record struct {
	entry wire.Entry
	// digest is the opened SHA-256(key_id ‖ secret); hasDigest is false for
	// unknown ids and for tombstones kept without their sealed digest.
	digest    [sha256.Size]byte
	hasDigest bool
	// status is "" for an active key, else the code its status answers.
	status  Code
	expires int64 // unix nanoseconds, 0 = never
	// keyNets and roleNets are the parsed CIDR lists; an entry that does not
	// parse matches nothing, so a bad list denies rather than allows.
	keyNets, roleNets []netip.Prefix
	// loaded is when the lookup was answered (unix nanoseconds): a record older
	// than Config.MaxAge is not answered from the cache.
	loaded int64
}

// newRecord prepares e. dek is the unwrapped data key of e.Sealed (nil when
// e has no sealed digest).
func newRecord(e wire.Entry, dek []byte) (*record, error) {
	r := &record{entry: e}
	switch e.Status {
	case wire.StatusActive:
	case wire.StatusDisabled:
		r.status = CodeDisabled
	case wire.StatusExpired:
		r.status = CodeExpired
	case wire.StatusRevoked:
		r.status = CodeRevoked
	case wire.StatusNotFound:
		r.status = CodeNotFound
		return r, nil
	default:
		return nil, fmt.Errorf("lookup of key %s: unknown status %q", e.KeyID, e.Status)
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
	} else if r.status == "" {
		return nil, fmt.Errorf("lookup of active key %s carries no sealed digest", e.KeyID)
	}
	if e.ExpiresAt != nil && !e.ExpiresAt.IsZero() {
		r.expires = e.ExpiresAt.UnixNano()
	}
	r.keyNets = parseNets(e.AllowedCIDRs)
	r.roleNets = repeated.netsOf(e.RoleAllowedCIDRs)
	r.compact()
	return r, nil
}

// compact drops what deciding no longer needs (the sealed digest is opened,
// the CIDR lists parsed) and shares the values keys of a role repeat: a cached
// record stays small with a million of them.
func (r *record) compact() {
	e := &r.entry
	e.Sealed, e.MountID, e.AllowedCIDRs, e.RoleAllowedCIDRs = nil, "", nil, nil
	e.Status = repeated.str(e.Status)
	e.Role = repeated.str(e.Role)
	e.Workspace = repeated.str(e.Workspace)
	e.Permissions = repeated.list(e.Permissions)
	e.AllowedWorkspaces = repeated.list(e.AllowedWorkspaces)
	e.Metadata = repeated.metadata(e.Metadata)
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
// digest, status, expiry, client address, workspace, permissions.
func (r *record) decide(d *[sha256.Size]byte, req *Request, now time.Time) Verdict {
	e := &r.entry
	// A secret that does not match is answered as if the key did not exist, so a
	// forged token learns nothing about a real key_id.
	if r.status == CodeNotFound || (r.hasDigest && !token.Equal(r.digest[:], d[:])) {
		return Verdict{Code: CodeNotFound, KeyID: e.KeyID}
	}
	if !r.hasDigest { // a tombstone without its digest: refuse, describe nothing
		return Verdict{Code: r.status, KeyID: e.KeyID}
	}
	v := Verdict{
		KeyID: e.KeyID, Name: e.Name, Role: e.Role, Workspace: e.Workspace,
		Permissions: e.Permissions, ExpiresAt: e.ExpiresAt,
	}
	switch {
	case r.status != "":
		v.Code = r.status
	case r.expires != 0 && now.UnixNano() >= r.expires:
		v.Code = CodeExpired
	case !allowedFrom(r.keyNets, req.ClientIP) || !allowedFrom(r.roleNets, req.ClientIP):
		v.Code = CodeIPNotAllowed
	case !e.WorkspaceGrants(req.Workspace):
		v.Code = CodeWorkspaceMismatch
	case !grantsAll(e.Permissions, req.Permissions):
		v.Code = CodeInsufficientPermissions
	default:
		v.Code = CodeValid
		v.Metadata = e.Metadata
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
