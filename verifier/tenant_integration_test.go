package verifier_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// TestIntegrationTenants runs the tenant rules of DESIGN §6 against the real
// plugin: answers pinned to a tenant, the tenant-wide list and a named
// allow-list applied at once through the feed, and forward-auth's header.
func TestIntegrationTenants(t *testing.T) {
	s := startStack(t, nil)
	acme := s.issue(t, "acme-key", nil)
	gone := s.issue(t, "gone", nil)
	_, err := s.vault.Client.Logical().Delete("apikeys/tenants/acme/keys/gone")
	require.NoError(t, err)
	admin(t, s.vault, "apikeys/tenants/acme/allowlists/office", map[string]any{"cidrs": "10.1.2.0/24"})
	listed := s.issue(t, "listed", map[string]any{"allowlists": "office"})
	globexData := admin(t, s.vault, "apikeys/tenants/globex/keys/globex-key", map[string]any{"role": "ops"})
	globex, _ := globexData["key"].(string)
	require.NotEmpty(t, globex)
	pin := func(tenant string) map[string]any { return map[string]any{"tenant": tenant} }

	for _, tc := range []struct {
		name  string
		key   string
		extra map[string]any
		want  string
	}{
		{"own tenant", acme, pin("acme"), "VALID"},
		{"another tenant", acme, pin("globex"), "TENANT_MISMATCH"},
		{"another tenant's key", globex, pin("acme"), "TENANT_MISMATCH"},
		{"revoked key of another tenant", gone, pin("globex"), "TENANT_MISMATCH"},
		{"revoked key of its tenant", gone, pin("acme"), "REVOKED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, s.code(t, tc.key, tc.extra))
			assert.Equal(t, tc.want, s.code(t, tc.key, tc.extra), "again, from the cache")
		})
	}

	t.Run("tenant-wide allowed_cidrs", func(t *testing.T) {
		from := func(ip string) map[string]any { return map[string]any{"client_ip": ip} }
		require.Equal(t, "VALID", s.code(t, acme, from("10.2.0.1")))
		require.Equal(t, "VALID", s.code(t, globex, from("10.2.0.1")))
		admin(t, s.vault, "apikeys/tenants/acme", map[string]any{"allowed_cidrs": "10.1.0.0/16"})
		t.Logf("tenant list seen after %s", s.within(t, acme, from("10.2.0.1"), "IP_NOT_ALLOWED", propagation))
		assert.Equal(t, "VALID", s.code(t, acme, from("10.1.0.1")))
		assert.Equal(t, "VALID", s.code(t, globex, from("10.2.0.1")), "another tenant's keys keep their answer")
		admin(t, s.vault, "apikeys/tenants/acme", map[string]any{"allowed_cidrs": ""})
		s.within(t, acme, from("10.2.0.1"), "VALID", propagation)
	})

	t.Run("named allow-list", func(t *testing.T) {
		from := map[string]any{"client_ip": "10.1.3.1"}
		require.Equal(t, "IP_NOT_ALLOWED", s.code(t, listed, from))
		require.Equal(t, "IP_NOT_ALLOWED", s.code(t, listed, from), "cached")
		admin(t, s.vault, "apikeys/tenants/acme/allowlists/office", map[string]any{"cidrs": "10.1.3.0/24"})
		t.Logf("allow-list change seen after %s", s.within(t, listed, from, "VALID", propagation))
	})

	t.Run("forward-auth", func(t *testing.T) {
		ask := func(tenant string) *http.Response {
			req, err := http.NewRequest(http.MethodGet, s.url+verdict.PathAuth, nil)
			require.NoError(t, err)
			req.Header.Set(verdict.HeaderAPIKey, acme)
			if tenant != "" {
				req.Header.Set(verdict.HeaderTenant, tenant)
			}
			resp, err := httpClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return resp
		}
		resp := ask("acme")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "acme", resp.Header.Get(verdict.HeaderTenant))
		resp = ask("globex")
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		assert.Equal(t, "TENANT_MISMATCH", resp.Header.Get(verdict.HeaderCode))
		assert.Equal(t, "acme", ask("").Header.Get(verdict.HeaderTenant), "unpinned: the 200 still names the key's tenant")
	})
}
