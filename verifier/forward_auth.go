package verifier

import (
	"net/http"
	"strings"

	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

// maxHeaderPermissions bounds the permissions one forward-auth request asks for.
const maxHeaderPermissions = 64

// serveAuth is forward-auth: the token comes from "Authorization: Bearer" or
// X-API-Key, the workspace and permissions from configurable headers.
//
//	200  key may make the request; X-Apikey-Id, -Name, -Role, -Workspace set
//	401  no key, or a key that does not authenticate (WWW-Authenticate set)
//	403  an authentic key denied by client address, workspace or permission
//	503  cannot decide (fail closed)
func (v *Verifier) serveAuth(w http.ResponseWriter, r *http.Request) {
	start := v.now()
	rid := requestID(w, r)
	key, ok := middleware.TokenFromHeader(r.Header)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="no API key presented"`)
		writeError(w, http.StatusUnauthorized, "no API key: send Authorization: Bearer <key> or X-API-Key")
		return
	}
	perms, ok := headerList(r.Header.Values(v.cfg.PermissionsHeader))
	if !ok {
		writeError(w, http.StatusBadRequest, "too many permissions requested")
		return
	}
	req := Request{
		Key:         key,
		Workspace:   strings.TrimSpace(r.Header.Get(v.cfg.WorkspaceHeader)),
		Permissions: perms,
		ClientIP:    v.clientAddr(r),
	}
	verdict, err := v.Check(r.Context(), req)
	v.logDecision("auth", rid, &req, verdict, err, start)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	h := w.Header()
	h.Set("X-Apikey-Code", string(verdict.Code))
	switch {
	case verdict.Valid():
		h.Set("X-Apikey-Id", verdict.KeyID)
		h.Set("X-Apikey-Name", verdict.Name)
		h.Set("X-Apikey-Role", verdict.Role)
		h.Set("X-Apikey-Workspace", verdict.Workspace)
		writeJSON(w, http.StatusOK, map[string]string{"code": string(verdict.Code), "key_id": verdict.KeyID})
	case verdict.Code.Forbidden():
		writeJSON(w, http.StatusForbidden, map[string]string{"code": string(verdict.Code), "error": "this key may not make this request"})
	default:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"code": string(verdict.Code), "error": "the API key is not valid"})
	}
}

// headerList splits comma-separated header values, dropping empty items.
func headerList(values []string) ([]string, bool) {
	var out []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if len(out) == maxHeaderPermissions {
					return nil, false
				}
				out = append(out, p)
			}
		}
	}
	return out, true
}
