package verifier

import (
	"net/http"
	"strings"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// maxHeaderPermissions bounds the permissions one forward-auth request asks for.
const maxHeaderPermissions = 64

// Endpoint names, as the audit log and the latency metric label them.
const (
	endpointVerify = "verify"
	endpointAuth   = "auth"
)

// serveAuth is forward-auth: the token comes from "Authorization: Bearer" or
// X-API-Key, the tenant, workspace and permissions to require from
// configurable headers the proxy sets or clears (a client's own value must
// never reach here: the shipped proxy configs overwrite them). The status
// follows verdict.Code.Status, the rule the middleware follows too:
//
//	200  key may make the request; X-Apikey-Id, -Tenant, -Name, -Role, -Workspace set
//	401  no key, or a key that does not authenticate (WWW-Authenticate set)
//	403  an authentic key denied by tenant, client address, workspace or permission
//	503  cannot decide (fail closed)
func (v *Verifier) serveAuth(w http.ResponseWriter, r *http.Request) {
	start := v.now()
	rid := requestID(w, r)
	key, ok := verdict.TokenFromHeader(r.Header)
	if !ok {
		w.Header().Set("WWW-Authenticate", verdict.WWWAuthenticate+`, error_description="no API key presented"`)
		writeError(w, http.StatusUnauthorized, "no API key: send Authorization: Bearer <key> or X-API-Key")
		return
	}
	perms, ok := headerList(r.Header.Values(v.cfg.PermissionsHeader))
	if !ok {
		writeError(w, http.StatusBadRequest, "too many permissions requested")
		return
	}
	// Two tenant headers mean a proxy appended its own to the client's instead
	// of replacing it: which one is the proxy's cannot be told, so refuse.
	tenants := r.Header.Values(v.cfg.TenantHeader)
	if len(tenants) > 1 {
		writeError(w, http.StatusBadRequest, "more than one tenant header: the proxy must replace the client's, not add to it")
		return
	}
	req := Request{
		Key:         key,
		Tenant:      strings.TrimSpace(firstOf(tenants)),
		Workspace:   strings.TrimSpace(r.Header.Get(v.cfg.WorkspaceHeader)),
		Permissions: perms,
		ClientIP:    v.clientAddr(r),
	}
	ans, err := v.Check(r.Context(), req)
	v.recordDecision(endpointAuth, rid, &req, ans, err, start)
	if err != nil {
		v.unavailable(w, endpointAuth, rid, err)
		return
	}
	writeAuthAnswer(w, ans)
}

// writeAuthAnswer renders a decided forward-auth answer.
func writeAuthAnswer(w http.ResponseWriter, ans Verdict) {
	h := w.Header()
	h.Set(verdict.HeaderCode, string(ans.Code))
	status := ans.Code.Status()
	switch status {
	case http.StatusOK:
		h.Set(verdict.HeaderKeyID, ans.KeyID)
		h.Set(verdict.HeaderTenant, ans.Tenant)
		h.Set(verdict.HeaderName, ans.Name)
		h.Set(verdict.HeaderRole, ans.Role)
		h.Set(verdict.HeaderWorkspace, ans.Workspace)
		writeJSON(w, status, map[string]string{"code": string(ans.Code), "key_id": ans.KeyID})
	case http.StatusForbidden:
		writeJSON(w, status, verdict.ErrorResponse{Code: ans.Code, Error: "this key may not make this request"})
	default:
		h.Set("WWW-Authenticate", verdict.WWWAuthenticate)
		writeJSON(w, status, verdict.ErrorResponse{Code: ans.Code, Error: "the API key is not valid"})
	}
}

func firstOf(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

// headerList splits comma-separated header values, dropping empty items; false
// when they name more than maxHeaderPermissions.
func headerList(values []string) ([]string, bool) {
	var out []string
	for _, v := range values {
		out = appendList(out, v)
		if len(out) > maxHeaderPermissions {
			return nil, false
		}
	}
	return out, true
}
