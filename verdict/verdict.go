package verdict

import "net/http"

// Code is the outcome of a decided verification.
type Code string

// The codes a decided answer carries (DESIGN §6).
const (
	Valid                   Code = "VALID"
	InvalidFormat           Code = "INVALID_FORMAT"
	NotFound                Code = "NOT_FOUND"
	Revoked                 Code = "REVOKED"
	Disabled                Code = "DISABLED"
	Expired                 Code = "EXPIRED"
	IPNotAllowed            Code = "IP_NOT_ALLOWED"
	TenantMismatch          Code = "TENANT_MISMATCH"
	WorkspaceMismatch       Code = "WORKSPACE_MISMATCH"
	InsufficientPermissions Code = "INSUFFICIENT_PERMISSIONS"
)

// codes is the registry: a new code is added here and to the rule in Status.
var codes = [...]Code{
	Valid, InvalidFormat, NotFound, Revoked, Disabled, Expired,
	IPNotAllowed, TenantMismatch, WorkspaceMismatch, InsufficientPermissions,
}

// Codes lists every code, in a fresh slice the caller may keep.
func Codes() []Code { return append([]Code(nil), codes[:]...) }

// Known reports whether c is one of Codes.
func (c Code) Known() bool {
	for _, k := range codes {
		if c == k {
			return true
		}
	}
	return false
}

// Forbidden reports whether c denies an authentic, usable key for this request
// (address, tenant, workspace or permission): 403, as opposed to a key that does
// not authenticate (401).
func (c Code) Forbidden() bool {
	switch c {
	case IPNotAllowed, TenantMismatch, WorkspaceMismatch, InsufficientPermissions:
		return true
	}
	return false
}

// Status is the HTTP status that forward-auth answers, and the middleware
// gives its caller, for a decided code: 200 for VALID, 403 for a Forbidden
// code, 401 for everything else, unknown codes included (fail closed: a code
// this build does not know never lets a request through).
func (c Code) Status() int {
	switch {
	case c == Valid:
		return http.StatusOK
	case c.Forbidden():
		return http.StatusForbidden
	default:
		return http.StatusUnauthorized
	}
}
