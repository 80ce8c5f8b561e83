package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// A key's own address allow-set is its allowed_cidrs ∪ the CIDRs of the lists
// it names; changing a list changes every key naming it with one feed entry.
func TestAllowlistsApplyToEveryKeyNamingThem(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "tenants/acme/allowlists/office", map[string]interface{}{"cidrs": "10.1.0.0/16", "description": "HQ"})
	a := e.issue("a", map[string]interface{}{"allowlists": "office", "allowed_cidrs": "192.0.2.0/24"})["key_id"].(string)
	b := e.issue("b", map[string]interface{}{"allowlists": "office"})["key_id"].(string)
	plain := e.issue("plain", nil)["key_id"].(string)
	assert.Equal(t, []string{"10.1.0.0/16", "192.0.2.0/24"}, e.lookup(a).AllowedCIDRs)
	assert.Equal(t, []string{"10.1.0.0/16"}, e.lookup(b).AllowedCIDRs)
	assert.Empty(t, e.lookup(plain).AllowedCIDRs)

	head := e.changes(0, "").Head
	e.mustOK(logical.UpdateOperation, "tenants/acme/allowlists/office", map[string]interface{}{"cidrs": "10.1.0.0/16,127.0.0.0/8"})
	ch := e.changes(head, "").Changes
	require.Len(t, ch, 1, "one entry for the list, none per key")
	assert.Equal(t, "acme", ch[0].Tenant)
	assert.Equal(t, "office", ch[0].Allowlist)
	assert.Equal(t, wire.OpAllowlistUpdated, ch[0].Op)
	assert.Equal(t, []string{"10.1.0.0/16", "127.0.0.0/8"}, e.lookup(b).AllowedCIDRs, "applies at once")

	read := e.mustOK(logical.ReadOperation, "tenants/acme/allowlists/office", nil).Data
	assert.Equal(t, 2, read["key_count"])
	assert.Equal(t, "HQ", read["description"], "a write keeps what it does not set")
	assert.Equal(t, []string{"office"}, e.mustOK(logical.ListOperation, "tenants/acme/allowlists/", nil).Data["keys"])

	// A list in use cannot be deleted; patching the keys off it frees it.
	e.mustFail(logical.DeleteOperation, "tenants/acme/allowlists/office", nil, "named by live keys")
	e.mustOK(logical.PatchOperation, "tenants/acme/keys/a", map[string]interface{}{"allowlists": ""})
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/b", nil)
	e.mustOK(logical.DeleteOperation, "tenants/acme/allowlists/office", nil)
	assert.Equal(t, []string{"192.0.2.0/24"}, e.lookup(a).AllowedCIDRs)
}

// Lists are a tenant's own: another tenant's list of the same name is not it.
func TestAllowlistsBelongToTheirTenant(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "tenants/globex/allowlists/office", map[string]interface{}{"cidrs": "10.9.0.0/16"})
	before := e.snapshot()
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "dev", "allowlists": "office"}, `tenant "acme" has no allow-list named "office"`)
	assert.Equal(t, before, e.snapshot(), "bad input changes nothing")
	id := e.issue("k", nil)["key_id"].(string)
	e.mustFail(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"allowlists": "office"}, "no allow-list")
	assert.Empty(t, e.lookup(id).AllowedCIDRs)
}

// A key naming a list that vanished from storage (deleted by hand) is not
// opened to every address: its allow-set keeps an entry that matches nothing.
func TestMissingAllowlistFailsClosed(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "tenants/acme/allowlists/office", map[string]interface{}{"cidrs": "10.1.0.0/16"})
	id := e.issue("k", map[string]interface{}{"allowlists": "office"})["key_id"].(string)
	require.NoError(t, e.s.Delete(t.Context(), allowlistKey("acme", "office")))
	e.b.allowlists.Remove(allowlistKey("acme", "office"))
	cidrs := e.lookup(id).AllowedCIDRs
	require.Len(t, cidrs, 1)
	assert.Equal(t, "missing-allowlist:office", cidrs[0])
}
