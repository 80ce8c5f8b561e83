package inprocess_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/verifier"
	"github.com/vault-apikeys/vault-apikeys/verifier/inprocess"
	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

// TestIntegrationInProcessAgainstVault runs the adapter against a real Vault
// dev server with the real plugin and transit, with the verifier's own
// least-privilege token: a key issued through Vault passes the middleware with
// its details in the request context, and its revocation through Vault stops
// it through the feed.
func TestIntegrationInProcessAgainstVault(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Vault dev server")
	}
	vt := vaulttest.Start(t)
	write := func(path string, data map[string]any) map[string]any {
		t.Helper()
		sec, err := vt.Client.Logical().Write(path, data)
		require.NoError(t, err, path)
		if sec == nil {
			return nil
		}
		return sec.Data
	}
	write("apikeys/roles/ops", map[string]any{"permissions": "clusters:read", "allowed_workspaces": "prod"})
	key, _ := write("apikeys/tenants/acme/keys/web", map[string]any{"role": "ops", "workspace": "prod"})["key"].(string)
	require.NotEmpty(t, key)

	c, err := inprocess.Start(verifier.Config{
		VaultAddrs: []string{vt.Addr}, VaultToken: vt.TokenFromFile(t, "policies/verifier.hcl"), Logger: hclog.NewNullLogger(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, c.Close()) })
	require.Eventually(t, func() bool { return c.Status().Ready }, 10*time.Second, 10*time.Millisecond, "never followed the feed")

	var seen middleware.Key
	h := inprocess.Middleware(c, middleware.RequirePermissions("clusters:read"),
		middleware.WithWorkspace(func(*http.Request) string { return "prod" }))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = middleware.KeyFromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	}))
	serve := func(key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/clusters", nil)
		r.Header.Set("X-API-Key", key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := serve(key)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	assert.Equal(t, "web", seen.Name)
	assert.Equal(t, "ops", seen.Role)
	assert.Equal(t, []string{"clusters:read"}, seen.Permissions)

	res, err := c.Verify(context.Background(), middleware.Request{Key: key, Workspace: "staging"})
	require.NoError(t, err)
	assert.Equal(t, verdict.WorkspaceMismatch, res.Code)

	_, err = vt.Client.Logical().Delete("apikeys/tenants/acme/keys/web")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return serve(key).Code == http.StatusUnauthorized }, 2*time.Second, 5*time.Millisecond,
		"a revocation through Vault reaches the in-process verifier")
	assert.Contains(t, serve(key).Body.String(), string(verdict.Revoked))
}
