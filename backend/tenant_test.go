package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// issueIn creates a key in tenant.
func (e *testEnv) issueIn(tenant, name string, data map[string]interface{}) map[string]interface{} {
	e.t.Helper()
	if data == nil {
		data = map[string]interface{}{}
	}
	if _, ok := data["role"]; !ok {
		data["role"] = "dev"
	}
	return e.mustOK(logical.CreateOperation, "tenants/"+tenant+"/keys/"+name, data).Data
}

func TestNamesAreUniquePerTenantAndIDsPerMount(t *testing.T) {
	e := configured(t)
	a := e.issueIn("acme", "ci", nil)
	g := e.issueIn("globex", "ci", nil)
	assert.NotEqual(t, a["key_id"], g["key_id"])
	assert.Equal(t, "acme", a["tenant"])
	assert.Equal(t, "globex", e.lookup(g["key_id"].(string)).Tenant)
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/ci", map[string]interface{}{"role": "dev"}, "already exists")

	// Revoking one tenant's name leaves the other's alone.
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/ci", nil)
	assert.Equal(t, wire.StatusActive, e.lookup(g["key_id"].(string)).Status)
	assert.Equal(t, wire.StatusRevoked, e.lookup(a["key_id"].(string)).Status)
}

// Within a tenant's paths, another tenant's key is no key at all: by key_id
// or leaked key, revoke, disable and enable fail and change nothing.
func TestTenantPathsCannotReachAnotherTenantsKey(t *testing.T) {
	e := configured(t)
	g := e.issueIn("globex", "b1", nil)
	id, key := g["key_id"].(string), g["key"].(string)
	before := e.snapshot()
	e.mustFail(logical.UpdateOperation, "tenants/acme/revoke", map[string]interface{}{"key_id": id}, `no key with key_id`)
	e.mustFail(logical.UpdateOperation, "tenants/acme/revoke", map[string]interface{}{"key": key}, `in tenant "acme"`)
	e.mustFail(logical.UpdateOperation, "tenants/acme/disable", map[string]interface{}{"key_id": id}, "no live key")
	e.mustFail(logical.UpdateOperation, "tenants/acme/enable", map[string]interface{}{"key_id": id}, "no live key")
	e.mustFail(logical.DeleteOperation, "tenants/acme/keys/b1", nil, "no live key")
	resp := e.mustOK(logical.ReadOperation, "tenants/acme/keys/b1", nil)
	assert.Nil(t, resp, "reading another tenant's name finds nothing")
	assert.Equal(t, before, e.snapshot(), "nothing changed")

	// Through its own tenant (and the operator's mount-wide path) it works.
	out := e.mustOK(logical.UpdateOperation, "tenants/globex/disable", map[string]interface{}{"key_id": id}).Data
	assert.Equal(t, wire.StatusDisabled, out["status"])
	assert.Equal(t, wire.StatusDisabled, e.lookup(id).Status)
	e.mustOK(logical.UpdateOperation, "tenants/globex/enable", map[string]interface{}{"key_id": id})
	revoked := e.mustOK(logical.UpdateOperation, "tenants/globex/revoke", map[string]interface{}{"key": key}).Data
	assert.Equal(t, true, revoked["revoked"])
	assert.Equal(t, "globex", revoked["tenant"])
	assert.Contains(t, revoked, "last_used_at")
	assert.Equal(t, wire.StatusRevoked, e.lookup(id).Status)
}

// Revocation answers revoked=true with the key's last use (Neon's response).
func TestRevokeAnswersLastUse(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
		map[string]interface{}{"key_id": id, "count": 3, "last_used_at": "2026-11-01T10:00:00Z", "last_used_from": "203.0.113.9"}}})
	out := e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k", nil).Data
	assert.Equal(t, true, out["revoked"])
	assert.Equal(t, "2026-11-01T10:00:00Z", out["last_used_at"])
	assert.Equal(t, "203.0.113.9", out["last_used_from"])
	assert.EqualValues(t, 3, out["use_count"])
}

func TestTenantQuota(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys_per_tenant": 2})
	e.issueIn("acme", "a1", nil)
	e.issueIn("acme", "a2", nil)
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/a3", map[string]interface{}{"role": "dev"}, `key limit exceeded: tenant "acme"`)
	e.issueIn("globex", "g1", nil) // another tenant has its own quota

	// A tenant's own max_keys overrides the default, both ways.
	e.mustOK(logical.UpdateOperation, "tenants/acme", map[string]interface{}{"max_keys": 3})
	e.issueIn("acme", "a3", nil)
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/a4", map[string]interface{}{"role": "dev"}, "max_keys=3")
	read := e.mustOK(logical.ReadOperation, "tenants/acme", nil).Data
	assert.Equal(t, 3, read["key_count"])
	assert.Equal(t, 3, read["max_keys"])
	assert.Equal(t, false, read["max_keys_default"])

	// Revoking frees quota at once (counters, not scans).
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/a1", nil)
	e.issueIn("acme", "a4", nil)

	// A role's max_keys counts within each tenant.
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys_per_tenant": 100})
	e.mustOK(logical.UpdateOperation, "roles/one", map[string]interface{}{"permissions": "*", "max_keys": 1})
	e.issueIn("globex", "r1", map[string]interface{}{"role": "one"})
	e.mustFail(logical.CreateOperation, "tenants/globex/keys/r2", map[string]interface{}{"role": "one"}, `of role "one"`)
	e.mustOK(logical.UpdateOperation, "tenants/initech", map[string]interface{}{"description": "x"})
	e.issueIn("initech", "r1", map[string]interface{}{"role": "one"})
}

func TestTenantSettingsAndDelete(t *testing.T) {
	e := configured(t)
	assert.Nil(t, e.mustOK(logical.ReadOperation, "tenants/ghost", nil), "a tenant with neither keys nor settings does not exist")
	id := e.issueIn("acme", "k", nil)["key_id"].(string)
	read := e.mustOK(logical.ReadOperation, "tenants/acme", nil).Data
	assert.Equal(t, 1, read["key_count"], "a tenant springs into being with its first key")
	assert.Equal(t, 10000, read["max_keys"])

	head := e.changes(0, "").Head
	e.mustOK(logical.UpdateOperation, "tenants/acme", map[string]interface{}{"allowed_cidrs": "10.0.0.0/8"})
	ch := e.changes(head, "").Changes
	require.Len(t, ch, 1, "one feed entry for the tenant, none per key")
	assert.Equal(t, wire.Change{Seq: ch[0].Seq, ID: ch[0].ID, Tenant: "acme", Op: wire.OpTenantUpdated, Time: ch[0].Time}, ch[0])
	assert.Equal(t, []string{"10.0.0.0/8"}, e.lookup(id).TenantAllowedCIDRs)

	list := e.mustOK(logical.ListOperation, "tenants/", nil).Data
	assert.Equal(t, []string{"acme"}, list["keys"])
	e.mustOK(logical.UpdateOperation, "tenants/zeta", map[string]interface{}{"description": "no keys yet"})
	assert.Equal(t, []string{"acme", "zeta"}, e.mustOK(logical.ListOperation, "tenants/", nil).Data["keys"])
	page := e.mustOK(logical.ListOperation, "tenants/", map[string]interface{}{"limit": 1}).Data
	assert.Equal(t, []string{"acme"}, page["keys"])
	assert.Equal(t, "acme", page["next"])

	e.mustFail(logical.DeleteOperation, "tenants/acme", nil, "still has 1 live keys")
	e.mustOK(logical.UpdateOperation, "tenants/acme/allowlists/office", map[string]interface{}{"cidrs": "10.1.0.0/16"})
	e.mustOK(logical.DeleteOperation, "tenants/acme", map[string]interface{}{"revoke_keys": true})
	assert.Equal(t, wire.StatusRevoked, e.lookup(id).Status)
	assert.Nil(t, e.mustOK(logical.ReadOperation, "tenants/acme/allowlists/office", nil), "its allow-lists go with it")
	assert.Nil(t, e.mustOK(logical.ReadOperation, "tenants/acme", nil))
}

// The operator's mount-wide list: rows <tenant>/<name>, a tenant filter and
// a next cursor; the tenant list's rows are names and carry every field.
func TestKeyListsPageAcrossTenants(t *testing.T) {
	e := configured(t)
	for _, tn := range []string{"acme", "acme-x", "globex"} {
		for i := 0; i < 3; i++ {
			e.issueIn(tn, fmt.Sprintf("k%d", i), map[string]interface{}{"description": "d-" + tn})
		}
	}
	all := e.mustOK(logical.ListOperation, "keys/", nil).Data
	assert.Equal(t, []string{"acme-x/k0", "acme-x/k1", "acme-x/k2", "acme/k0", "acme/k1", "acme/k2", "globex/k0", "globex/k1", "globex/k2"}, all["keys"])
	assert.Equal(t, "", all["next"])
	page := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{"tenant": "acme", "limit": 2}).Data
	assert.Equal(t, []string{"acme/k0", "acme/k1"}, page["keys"])
	assert.Equal(t, "acme/k1", page["next"])
	rest := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{"tenant": "acme", "after": "acme/k1"}).Data
	assert.Equal(t, []string{"acme/k2"}, rest["keys"], "the tenant filter stops at the tenant's end")
	assert.Equal(t, "", rest["next"])

	own := e.mustOK(logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{"limit": 2, "after": "k0"}).Data
	assert.Equal(t, []string{"k1", "k2"}, own["keys"])
	row := own["key_info"].(map[string]interface{})["k1"].(map[string]interface{})
	for _, field := range []string{"name", "tenant", "key_id", "role", "status", "created_by", "created_at", "last_used_at", "last_used_from", "expires_at", "description", "allowlists", "permissions"} {
		assert.Contains(t, row, field)
	}
	assert.Equal(t, "d-acme", row["description"])
	assert.Equal(t, "acme", row["tenant"])
}

func TestLookupCarriesTenant(t *testing.T) {
	e := configured(t)
	id := e.issueIn("acme", "k", nil)["key_id"].(string)
	entry := e.lookup(id)
	assert.Equal(t, "acme", entry.Tenant)
	assert.Equal(t, "k", entry.Name)
	raw, err := json.Marshal(e.mustOK(logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": id}).Data)
	require.NoError(t, err)
	var batch wire.Batch
	require.NoError(t, json.Unmarshal(raw, &batch))
	assert.Equal(t, "acme", batch.Entries[0].Tenant)
}

// Concurrent creates in one tenant never pass its quota: in-flight creates
// count against it, and another tenant's creates do not.
func TestConcurrentCreatesNeverExceedTenantQuota(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys_per_tenant": 10})
	var wg sync.WaitGroup
	var ok [2]atomic.Int32
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tenant := i % 2
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.CreateOperation, Path: fmt.Sprintf("tenants/t%d/keys/k%d", tenant, i), Storage: e.s,
				Data: map[string]interface{}{"role": "dev"},
			})
			if err == nil && resp != nil && !resp.IsError() {
				ok[tenant].Add(1)
			}
		}(i)
	}
	wg.Wait()
	for tenant := range ok {
		assert.EqualValues(t, 10, ok[tenant].Load(), "tenant t%d", tenant)
		names, err := e.s.List(context.Background(), fmt.Sprintf("%st%d/", storageNamePrefix, tenant))
		require.NoError(t, err)
		assert.Len(t, names, 10)
	}
}
