package verifier

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func authRequest(h http.Handler, headers map[string]string, remote string) *httptest.ResponseRecorder {
	return authRequestTo(h, http.MethodGet, "/v1/auth", headers, remote)
}

func authRequestTo(h http.Handler, method, path string, headers map[string]string, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = remote
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestForwardAuth(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("prod", "ops", keyOpts{workspace: "prod"})
	revoked, revokedID := f.issue("gone", "ops", keyOpts{})
	f.setStatus(revokedID, wire.StatusRevoked, wire.OpRevoked)
	v, _ := startVerifier(t, f, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.StaleIfError = 300 * time.Millisecond
	})
	h := v.Handler()
	const peer = "127.0.0.1:40000"

	w := authRequest(h, map[string]string{"Authorization": "Bearer " + key}, peer)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, id, w.Header().Get("X-Apikey-Id"))
	assert.Equal(t, "ops", w.Header().Get("X-Apikey-Role"))
	assert.Equal(t, "prod", w.Header().Get("X-Apikey-Workspace"))
	assert.Equal(t, "prod", w.Header().Get("X-Apikey-Name"))

	w = authRequest(h, map[string]string{"X-API-Key": key, "X-Apikey-Workspace": "prod", "X-Apikey-Permissions": "clusters:read, nodes:list"}, peer)
	assert.Equal(t, http.StatusOK, w.Code, "X-API-Key with workspace and permissions")
	w = authRequest(h, map[string]string{"Authorization": "bearer " + key}, peer)
	assert.Equal(t, http.StatusOK, w.Code, "the scheme is case-insensitive")

	for name, headers := range map[string]map[string]string{
		"no key":        {},
		"basic auth":    {"Authorization": "Basic dXNlcjpwYXNz"},
		"empty bearer":  {"Authorization": "Bearer "},
		"invalid":       {"Authorization": "Bearer hello"},
		"revoked":       {"X-API-Key": revoked},
		"forged secret": {"X-API-Key": forge(t, key)},
	} {
		w := authRequest(h, headers, peer)
		assert.Equal(t, http.StatusUnauthorized, w.Code, name)
		assert.True(t, strings.HasPrefix(w.Header().Get("WWW-Authenticate"), `Bearer error="invalid_token"`), name)
		assert.Empty(t, w.Header().Get("X-Apikey-Id"), name)
	}
	for name, headers := range map[string]map[string]string{
		"wrong workspace": {"X-API-Key": key, "X-Apikey-Workspace": "dev-eu"},
		"permission":      {"X-API-Key": key, "X-Apikey-Permissions": "clusters:read,clusters:delete"},
		"client address":  {"X-API-Key": key, "X-Forwarded-For": "192.0.2.7"},
	} {
		w := authRequest(h, headers, peer)
		assert.Equal(t, http.StatusForbidden, w.Code, name)
		assert.Empty(t, w.Header().Get("X-Apikey-Id"), name)
	}
	w = authRequest(h, map[string]string{"X-API-Key": key, "X-Forwarded-For": "192.0.2.7"}, "10.9.9.9:1")
	assert.Equal(t, http.StatusOK, w.Code, "X-Forwarded-For from an untrusted peer is ignored")

	f.setDown(true)
	require.Eventually(t, func() bool {
		return authRequest(h, map[string]string{"X-API-Key": key}, peer).Code == http.StatusServiceUnavailable
	}, 5*time.Second, 10*time.Millisecond)
}

func TestForwardAuthConfigurableHeaders(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("prod", "ops", keyOpts{workspace: "prod"})
	v, _ := startVerifier(t, f, func(c *Config) { c.WorkspaceHeader, c.PermissionsHeader = "X-Ws", "X-Perms" })
	h := v.Handler()
	assert.Equal(t, http.StatusForbidden, authRequest(h, map[string]string{"X-API-Key": key, "X-Ws": "dev-eu"}, "127.0.0.1:1").Code)
	assert.Equal(t, http.StatusForbidden, authRequest(h, map[string]string{"X-API-Key": key, "X-Perms": "x:y"}, "127.0.0.1:1").Code)
	assert.Equal(t, http.StatusOK, authRequest(h, map[string]string{"X-API-Key": key, "X-Apikey-Workspace": "dev-eu"}, "127.0.0.1:1").Code)
}

// Envoy ext_authz (HTTP) sends the original method and path below the
// configured prefix: /v1/auth/<original path>.
func TestForwardAuthEnvoyPathPrefix(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("prod", "ops", keyOpts{workspace: "prod"})
	v, _ := startVerifier(t, f, nil)
	h := v.Handler()
	for _, tc := range []struct{ method, path string }{
		{http.MethodGet, "/v1/auth/"},
		{http.MethodGet, "/v1/auth/api/clusters?limit=5"},
		{http.MethodPost, "/v1/auth/api/clusters/alpha"},
		{http.MethodDelete, "/v1/auth/a/b/c"},
	} {
		w := authRequestTo(h, tc.method, tc.path, map[string]string{"X-API-Key": key}, "127.0.0.1:1")
		assert.Equal(t, http.StatusOK, w.Code, "%s %s", tc.method, tc.path)
		assert.Equal(t, id, w.Header().Get(verdict.HeaderKeyID), tc.path)
		w = authRequestTo(h, tc.method, tc.path, nil, "127.0.0.1:1")
		assert.Equal(t, http.StatusUnauthorized, w.Code, "%s %s without a key", tc.method, tc.path)
		w = authRequestTo(h, tc.method, tc.path, map[string]string{"X-API-Key": key, verdict.HeaderWorkspace: "dev-eu"}, "127.0.0.1:1")
		assert.Equal(t, http.StatusForbidden, w.Code, "%s %s in another workspace", tc.method, tc.path)
	}
	w := authRequestTo(h, http.MethodGet, "/v1/authx", map[string]string{"X-API-Key": key}, "127.0.0.1:1")
	assert.Equal(t, http.StatusNotFound, w.Code, "only /v1/auth and paths below it")
}
