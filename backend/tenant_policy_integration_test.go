package backend_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// tenantCall is one request a tenant admin makes with their own token.
type tenantCall struct {
	what string
	do   func(c *api.Client) error
}

func tRead(path string) func(*api.Client) error {
	return func(c *api.Client) error { _, err := c.Logical().Read(path); return err }
}

// tReadParams is `vault read path k=v …`: a GET with query parameters (with
// list=true, Vault makes it a LIST carrying the others).
func tReadParams(path string, params map[string][]string) func(*api.Client) error {
	return func(c *api.Client) error { _, err := c.Logical().ReadWithData(path, params); return err }
}

func tList(path string) func(*api.Client) error {
	return func(c *api.Client) error { _, err := c.Logical().List(path); return err }
}

func tWrite(path string, data map[string]interface{}) func(*api.Client) error {
	return func(c *api.Client) error { _, err := c.Logical().Write(path, data); return err }
}

func tPatch(path string, data map[string]interface{}) func(*api.Client) error {
	return func(c *api.Client) error {
		_, err := c.Logical().JSONMergePatch(context.Background(), path, data)
		return err
	}
}

func tDelete(path string) func(*api.Client) error {
	return func(c *api.Client) error { _, err := c.Logical().Delete(path); return err }
}

// permissionDenied tells whether Vault's ACL refused the request (403).
func permissionDenied(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusForbidden
}

// tenantFixture is one tenant with its admin, a key and an allow-list.
type tenantFixture struct {
	tenant, user, entityID string
	admin                  *api.Client
	keyName, key, keyID    string
	allowlist              string
}

func newTenantFixture(t *testing.T, v *vaulttest.Vault, tenant, user string) *tenantFixture {
	t.Helper()
	f := &tenantFixture{tenant: tenant, user: user, keyName: user + "-ci", allowlist: user + "-office"}
	f.entityID = v.AddTenantAdmin(t, user, "pw-"+user+"-long", tenant, "admin")
	f.admin = v.Login(t, user, "pw-"+user+"-long")
	_, err := f.admin.Logical().Write("apikeys/tenants/"+tenant+"/allowlists/"+f.allowlist,
		map[string]interface{}{"cidrs": "10.0.0.0/8", "description": "office"})
	require.NoError(t, err, "%s writes an allow-list in %s", user, tenant)
	sec, err := f.admin.Logical().Write("apikeys/tenants/"+tenant+"/keys/"+f.keyName,
		map[string]interface{}{"role": "admin", "allowlists": f.allowlist})
	require.NoError(t, err, "%s issues a key in %s", user, tenant)
	require.NotNil(t, sec)
	f.key, _ = sec.Data["key"].(string)
	f.keyID, _ = sec.Data["key_id"].(string)
	require.NotEmpty(t, f.key)
	require.NotEmpty(t, f.keyID)
	return f
}

// requireUntouched checks, as root, that the tenant's key is still active with
// the same key_id (not rotated) and its allow-list still holds its CIDRs.
func (f *tenantFixture) requireUntouched(t *testing.T, v *vaulttest.Vault, after string) {
	t.Helper()
	sec, err := v.Client.Logical().Read("apikeys/tenants/" + f.tenant + "/keys/" + f.keyName)
	require.NoError(t, err, after)
	require.NotNil(t, sec, "%s: %s's key is gone", after, f.tenant)
	assert.Equal(t, "active", sec.Data["status"], "%s: %s's key must stay active", after, f.tenant)
	assert.Equal(t, f.keyID, sec.Data["key_id"], "%s: %s's key must not be rotated", after, f.tenant)
	al, err := v.Client.Logical().Read("apikeys/tenants/" + f.tenant + "/allowlists/" + f.allowlist)
	require.NoError(t, err, after)
	require.NotNil(t, al, "%s: %s's allow-list is gone", after, f.tenant)
	assert.Equal(t, []interface{}{"10.0.0.0/8"}, al.Data["cidrs"], "%s: %s's allow-list must not change", after, f.tenant)
}

// crossTenantCalls are what `from` may try against `to`: every one is refused
// by Vault's ACL (the templated policy), before the plugin sees it.
func crossTenantCalls(from, to *tenantFixture) []tenantCall {
	other := "apikeys/tenants/" + to.tenant
	key := other + "/keys/" + to.keyName
	list := map[string][]string{"list": {"true"}, "limit": {"10"}}
	return []tenantCall{
		{"read the other tenant's key", tRead(key)},
		{"list the other tenant's keys", tList(other + "/keys")},
		{"list the other tenant's keys with parameters", tReadParams(other+"/keys", list)},
		{"create a key in the other tenant", tWrite(other+"/keys/intruder", map[string]interface{}{"role": "admin"})},
		{"patch the other tenant's key", tPatch(key, map[string]interface{}{"description": "mine now"})},
		{"disable the other tenant's key", tWrite(key+"/disable", nil)},
		{"enable the other tenant's key", tWrite(key+"/enable", nil)},
		{"rotate the other tenant's key", tWrite(key+"/rotate", nil)},
		{"disable by key_id through the other tenant", tWrite(other+"/disable", map[string]interface{}{"key_id": to.keyID})},
		{"revoke the other tenant's key by path", tDelete(key)},
		{"revoke by key_id through the other tenant", tWrite(other+"/revoke", map[string]interface{}{"key_id": to.keyID})},
		{"revoke by leaked key through the other tenant", tWrite(other+"/revoke", map[string]interface{}{"key": to.key})},
		{"list the other tenant's allow-lists", tList(other + "/allowlists")},
		{"read the other tenant's allow-list", tRead(other + "/allowlists/" + to.allowlist)},
		{"change the other tenant's allow-list", tWrite(other+"/allowlists/"+to.allowlist, map[string]interface{}{"cidrs": "0.0.0.0/0"})},
		{"delete the other tenant's allow-list", tDelete(other + "/allowlists/" + to.allowlist)},
		{"read the other tenant's expiring report", tRead(other + "/report/expiring")},
		{"read the other tenant's stale report", tRead(other + "/report/stale")},
		{"read the other tenant's record", tRead(other)},
		{"raise the other tenant's quota", tWrite(other, map[string]interface{}{"max_keys": 1})},
		{"read the other admin's entity", tRead("identity/entity/id/" + to.entityID)},

		// Operator paths: no tenant admin reaches them, whatever the tenant.
		{"read its own tenant record", tRead("apikeys/tenants/" + from.tenant)},
		{"change its own tenant's quota", tWrite("apikeys/tenants/"+from.tenant, map[string]interface{}{"max_keys": 100000})},
		{"list tenants", tList("apikeys/tenants")},
		{"list the mount-wide keys", tList("apikeys/keys")},
		{"list the mount-wide keys filtered by tenant", tReadParams("apikeys/keys", map[string][]string{"list": {"true"}, "tenant": {to.tenant}})},
		{"revoke by key_id mount-wide", tWrite("apikeys/revoke", map[string]interface{}{"key_id": to.keyID})},
		{"revoke by leaked key mount-wide", tWrite("apikeys/revoke", map[string]interface{}{"key": to.key})},
		{"read the mount-wide expiring report", tRead("apikeys/report/expiring")},
		{"read the mount-wide stale report", tReadParams("apikeys/report/stale", map[string][]string{"tenant": {to.tenant}})},
		{"change a role", tWrite("apikeys/roles/admin", map[string]interface{}{"permissions": "x:y"})},
		{"create a role", tWrite("apikeys/roles/superuser", map[string]interface{}{"permissions": "*"})},
		{"delete a role", tDelete("apikeys/roles/admin")},
		{"read the config", tRead("apikeys/config")},
		{"write the config", tWrite("apikeys/config", map[string]interface{}{"max_keys_per_tenant": 1})},
		{"look up the other tenant's record", tRead("apikeys/lookup/" + to.keyID)},
		{"read the change feed", tRead("apikeys/changes")},
		{"report usage", tWrite("apikeys/usage", map[string]interface{}{"usage": []interface{}{}})},
		{"start tidy", tWrite("apikeys/tidy", nil)},
		{"change its own entity's tenant", tWrite("identity/entity/id/"+from.entityID, map[string]interface{}{"metadata": map[string]string{"tenant": to.tenant}})},
	}
}

// TestIntegrationTenantAdminsAreConfined proves policies/tenant-admin.hcl on a
// real Vault (DESIGN §7): two userpass tenant admins in two tenants can do
// everything in their own tenant and nothing in the other's — by path, by
// key_id and by leaked key — nor touch roles, config or operator paths.
func TestIntegrationTenantAdminsAreConfined(t *testing.T) {
	v := vaulttest.Start(t)
	_, err := v.Client.Logical().Write("apikeys/roles/admin", map[string]interface{}{"permissions": "*", "allowed_workspaces": "*"})
	require.NoError(t, err)
	acme := newTenantFixture(t, v, "acme", "alice")
	globex := newTenantFixture(t, v, "globex", "bob")

	for _, pair := range [][2]*tenantFixture{{acme, globex}, {globex, acme}} {
		from, to := pair[0], pair[1]
		t.Run(from.user+" cannot reach "+to.tenant, func(t *testing.T) {
			for _, call := range crossTenantCalls(from, to) {
				err := call.do(from.admin)
				assert.True(t, permissionDenied(err), "%s: %s must be refused by the policy, got %v", from.user, call.what, err)
				to.requireUntouched(t, v, from.user+" tried to "+call.what)
			}
			// Through its own tenant's paths the plugin sees the request and
			// must find nothing of the other tenant: an error, no change.
			own := "apikeys/tenants/" + from.tenant
			for _, call := range []tenantCall{
				{"revoke the other tenant's key_id through its own tenant", tWrite(own+"/revoke", map[string]interface{}{"key_id": to.keyID})},
				{"revoke the other tenant's leaked key through its own tenant", tWrite(own+"/revoke", map[string]interface{}{"key": to.key})},
				{"disable the other tenant's key_id through its own tenant", tWrite(own+"/disable", map[string]interface{}{"key_id": to.keyID})},
				{"enable the other tenant's key_id through its own tenant", tWrite(own+"/enable", map[string]interface{}{"key_id": to.keyID})},
				{"name the other tenant's allow-list in its own key", tWrite(own+"/keys/borrowed", map[string]interface{}{"role": "admin", "allowlists": to.allowlist})},
			} {
				assert.Error(t, call.do(from.admin), "%s: %s must fail", from.user, call.what)
				to.requireUntouched(t, v, from.user+" tried to "+call.what)
			}
			// Names are per tenant: the other tenant's name is nothing here.
			sec, err := from.admin.Logical().Read(own + "/keys/" + to.keyName)
			assert.Nil(t, sec, "%s reads %s's key name in its own tenant", from.user, to.tenant)
			assert.False(t, permissionDenied(err))
			from.requireUntouched(t, v, from.user+"'s own attempts")
		})
	}

	for _, f := range []*tenantFixture{acme, globex} {
		t.Run(f.user+" manages "+f.tenant, func(t *testing.T) {
			tenantAdminCanManageOwnTenant(t, v, f)
		})
	}
	// After all of that, nothing of the other tenant moved.
	for _, f := range []*tenantFixture{acme, globex} {
		f.requireUntouched(t, v, "the end")
	}
}

// tenantAdminCanManageOwnTenant walks every tenant admin path in f's own tenant
// with f's token, on keys made for the walk (f's fixture key stays as it is).
func tenantAdminCanManageOwnTenant(t *testing.T, v *vaulttest.Vault, f *tenantFixture) {
	c := f.admin
	own := "apikeys/tenants/" + f.tenant
	mustOK := func(what string, do func(*api.Client) error) {
		t.Helper()
		require.NoError(t, do(c), "%s must be able to %s", f.user, what)
	}
	status := func(name string) interface{} {
		t.Helper()
		sec, err := c.Logical().Read(own + "/keys/" + name)
		require.NoError(t, err)
		require.NotNil(t, sec, "%s/%s", f.tenant, name)
		return sec.Data["status"]
	}

	mustOK("read the roles", tRead("apikeys/roles/admin"))
	roles, err := c.Logical().List("apikeys/roles")
	require.NoError(t, err)
	require.NotNil(t, roles)
	assert.Contains(t, roles.Data["keys"], "admin")
	ent, err := c.Logical().Read("identity/entity/id/" + f.entityID)
	require.NoError(t, err)
	require.NotNil(t, ent)
	assert.Equal(t, f.tenant, ent.Data["metadata"].(map[string]interface{})["tenant"])

	mustOK("create a key", tWrite(own+"/keys/walk", map[string]interface{}{"role": "admin", "description": "walk"}))
	mustOK("read a key", tRead(own+"/keys/walk"))
	list, err := c.Logical().List(own + "/keys")
	require.NoError(t, err)
	require.NotNil(t, list)
	assert.Subset(t, list.Data["keys"], []interface{}{f.keyName, "walk"})
	paged, err := c.Logical().ReadWithData(own+"/keys", map[string][]string{"list": {"true"}, "limit": {"1"}})
	require.NoError(t, err, "list with parameters")
	require.NotNil(t, paged)
	assert.Len(t, paged.Data["keys"], 1, "limit=1")
	assert.NotEmpty(t, paged.Data["next"], "a next cursor after the first of two keys")

	mustOK("patch a key", tPatch(own+"/keys/walk", map[string]interface{}{"description": "patched"}))
	mustOK("disable a key", tWrite(own+"/keys/walk/disable", nil))
	assert.Equal(t, "disabled", status("walk"))
	mustOK("enable a key", tWrite(own+"/keys/walk/enable", nil))
	assert.Equal(t, "active", status("walk"))
	walkID, err := c.Logical().Read(own + "/keys/walk")
	require.NoError(t, err)
	byID := map[string]interface{}{"key_id": walkID.Data["key_id"]}
	mustOK("disable a key by key_id", tWrite(own+"/disable", byID))
	assert.Equal(t, "disabled", status("walk"))
	mustOK("enable a key by key_id", tWrite(own+"/enable", byID))
	assert.Equal(t, "active", status("walk"))
	mustOK("rotate a key", tWrite(own+"/keys/walk/rotate", nil))
	mustOK("revoke a key by path", tDelete(own+"/keys/walk"))

	mustOK("create a key to revoke by id", tWrite(own+"/keys/by-id", map[string]interface{}{"role": "admin"}))
	sec, err := c.Logical().Read(own + "/keys/by-id")
	require.NoError(t, err)
	revoked, err := c.Logical().Write(own+"/revoke", map[string]interface{}{"key_id": sec.Data["key_id"]})
	require.NoError(t, err, "revoke by key_id in its own tenant")
	require.NotNil(t, revoked)
	assert.Equal(t, true, revoked.Data["revoked"], "revoke answers revoked: true")

	leaked, err := c.Logical().Write(own+"/keys/leaked", map[string]interface{}{"role": "admin"})
	require.NoError(t, err)
	_, err = c.Logical().Write(own+"/revoke", map[string]interface{}{"key": leaked.Data["key"]})
	require.NoError(t, err, "revoke by leaked key in its own tenant")
	gone, err := v.Client.Logical().Read(own + "/keys/leaked")
	require.NoError(t, err)
	if gone != nil {
		assert.Equal(t, "revoked", gone.Data["status"], "the leaked key is revoked")
	}

	mustOK("write an allow-list", tWrite(own+"/allowlists/walk", map[string]interface{}{"cidrs": "192.0.2.0/24"}))
	mustOK("read an allow-list", tRead(own+"/allowlists/walk"))
	lists, err := c.Logical().List(own + "/allowlists")
	require.NoError(t, err)
	require.NotNil(t, lists)
	assert.Subset(t, lists.Data["keys"], []interface{}{f.allowlist, "walk"})
	mustOK("delete an allow-list", tDelete(own+"/allowlists/walk"))
	mustOK("read the expiring report", tRead(own+"/report/expiring"))
	mustOK("read the stale report", tRead(own+"/report/stale"))
}
