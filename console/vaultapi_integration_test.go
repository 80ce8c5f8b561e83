package console

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// TestIntegrationVaultAPIAgainstTheEngine runs the console's Vault calls as a
// tenant admin against the real engine: the fields it reads are the ones the
// engine answers, and the engine's refusals come out in the right plain words
// (its messages name several things at once: a ttl error names the role, a
// quota error the tenant and role).
func TestIntegrationVaultAPIAgainstTheEngine(t *testing.T) {
	v := vaulttest.Start(t)
	_, err := v.Client.Logical().Write("apikeys/roles/developer", map[string]interface{}{
		"permissions": "clusters:read", "allowed_workspaces": "prod-*", "max_ttl": "720h"})
	require.NoError(t, err)
	v.AddTenantAdmin(t, "alice", "alice-pw-long", "acme", "developer")
	v.AddTenantAdmin(t, "bob", "bob-pw-long", "globex", "developer")
	api := &vaultAPI{addr: v.Addr, mount: "apikeys", authMount: "userpass", http: http.DefaultClient}
	ctx := context.Background()

	tok, err := api.login(ctx, "alice", "alice-pw-long")
	require.NoError(t, err)
	id, err := api.whoAmI(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, "acme", id.Tenant)
	roles, err := api.roles(ctx, tok)
	require.NoError(t, err)
	assert.Equal(t, []string{"developer"}, roles)

	out, err := api.createKey(ctx, tok, "acme", "ci", CreateRequest{Role: "developer", Description: "CI", TTL: "24h"})
	require.NoError(t, err)
	assert.Equal(t, "acme", out.Key.Tenant)
	assert.NotEmpty(t, out.Key.KeyID)
	page, err := api.listKeys(ctx, tok, "acme", "", "", 10)
	require.NoError(t, err)
	require.Len(t, page.Keys, 1)
	row := page.Keys[0]
	assert.Equal(t, "ci", row.Name)
	assert.Equal(t, "active", row.Status)
	assert.Equal(t, "CI", row.Description)
	assert.Equal(t, id.EntityID, row.CreatedBy.EntityID)
	assert.NotEmpty(t, row.CreatedBy.DisplayName)
	assert.NotEmpty(t, row.CreatedAt)
	assert.NotEmpty(t, row.ExpiresAt)
	assert.Empty(t, page.Next)

	// Details: disable/enable, rotation with grace, the key in grace revoked by key_id.
	require.NoError(t, api.setEnabled(ctx, tok, "acme", "ci", false))
	k, err := api.readKey(ctx, tok, "acme", "ci")
	require.NoError(t, err)
	assert.Equal(t, "disabled", k.Status)
	require.NoError(t, api.setEnabled(ctx, tok, "acme", "ci", true))
	rotated, err := api.rotateKey(ctx, tok, "acme", "ci", "1h")
	require.NoError(t, err)
	assert.NotEqual(t, out.Key.KeyID, rotated.Key.KeyID)
	k, err = api.readKey(ctx, tok, "acme", "ci")
	require.NoError(t, err)
	require.Len(t, k.PreviousKeys, 1)
	assert.Equal(t, out.Key.KeyID, k.PreviousKeys[0].KeyID)
	assert.NotEmpty(t, k.PreviousKeys[0].GraceUntil)
	require.NoError(t, api.revokeKeyID(ctx, tok, "acme", out.Key.KeyID))
	k, err = api.readKey(ctx, tok, "acme", "ci")
	require.NoError(t, err)
	assert.Empty(t, k.PreviousKeys)

	// Allow-lists offered on the create form, and a key that names one.
	_, err = v.Client.Logical().Write("apikeys/tenants/acme/allowlists/office", map[string]interface{}{"cidrs": "10.1.0.0/16"})
	require.NoError(t, err)
	lists, err := api.allowlists(ctx, tok, "acme")
	require.NoError(t, err)
	assert.Equal(t, []string{"office"}, lists)
	restricted, err := api.createKey(ctx, tok, "acme", "office-only", CreateRequest{Role: "developer", TTL: "24h", Allowlists: []string{"office"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"office"}, restricted.Key.Allowlists)
	expiring, err := api.report(ctx, tok, "acme", "expiring", "720h", 100)
	require.NoError(t, err)
	assert.Len(t, expiring.Keys, 2, "both keys expire within 30 days")
	_, err = api.revokeKey(ctx, tok, "acme", "office-only")
	require.NoError(t, err)

	refused := func(req CreateRequest, name string) string {
		t.Helper()
		_, err := api.createKey(ctx, tok, "acme", name, req)
		require.Error(t, err, "%s must be refused", name)
		return plainError(err)
	}
	assert.Contains(t, refused(CreateRequest{Role: "developer"}, "ci"), "Name taken")
	assert.Contains(t, refused(CreateRequest{Role: "nope"}, "x1"), "role is not available")
	assert.Contains(t, refused(CreateRequest{Role: "developer", TTL: "0"}, "x2"), "does not allow keys that never expire")
	assert.Contains(t, refused(CreateRequest{Role: "developer", TTL: "2000h"}, "x3"), "longer than the role allows")
	assert.Contains(t, refused(CreateRequest{Role: "developer", Workspace: "staging"}, "x4"), "workspace is not allowed")
	assert.Contains(t, refused(CreateRequest{Role: "developer", Allowlists: []string{"nowhere"}}, "x5"), "allow-lists is not valid")
	_, err = v.Client.Logical().Write("apikeys/tenants/acme", map[string]interface{}{"max_keys": 1})
	require.NoError(t, err)
	assert.Contains(t, refused(CreateRequest{Role: "developer"}, "x6"), "Quota reached")

	// Another tenant: the policy refuses, in words.
	bobTok, err := api.login(ctx, "bob", "bob-pw-long")
	require.NoError(t, err)
	_, err = api.readKey(ctx, bobTok, "acme", "ci")
	assert.Contains(t, plainError(err), "Permission denied")
	assert.Contains(t, plainError(api.revokeKeyID(ctx, bobTok, "globex", rotated.Key.KeyID)), "no longer exists",
		"another tenant's key_id is no key here")

	gone, err := api.revokeKey(ctx, tok, "acme", "ci")
	require.NoError(t, err)
	assert.True(t, gone.Revoked)
	assert.Equal(t, rotated.Key.KeyID, gone.KeyID)
	require.NoError(t, api.revokeSelf(ctx, tok))
	_, err = api.whoAmI(ctx, tok)
	assert.Error(t, err, "the token is revoked at sign-out")
}
