package vaulttest

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/vault/api"
)

// TenantAdminPolicy is the name AddTenantAdmin gives policies/tenant-admin.hcl.
const TenantAdminPolicy = "tenant-admin"

// AddTenantAdmin onboards a tenant admin as an operator does (DESIGN §8): a
// userpass user with policies/tenant-admin.hcl, and an identity entity whose
// metadata names the tenant and the platform role (apikeys_role), linked to the
// user by an entity alias. It enables userpass and writes the policy the first
// time. It answers the entity's id.
func (v *Vault) AddTenantAdmin(t T, user, password, tenant, role string) string {
	t.Helper()
	accessor := v.userpassAccessor(t)
	hcl, err := os.ReadFile(filepath.Join(Root(), "policies", "tenant-admin.hcl"))
	v.Must(t, err)
	v.Must(t, v.Client.Sys().PutPolicy(TenantAdminPolicy, string(hcl)))
	_, err = v.Client.Logical().Write("auth/userpass/users/"+user, map[string]interface{}{
		"password": password, "policies": TenantAdminPolicy,
	})
	v.Must(t, err)
	md := map[string]string{"tenant": tenant}
	if role != "" {
		md["apikeys_role"] = role
	}
	ent, err := v.Client.Logical().Write("identity/entity", map[string]interface{}{"name": user, "metadata": md})
	v.Must(t, err)
	if ent == nil {
		t.Fatalf("identity/entity %s: no answer", user)
	}
	id, _ := ent.Data["id"].(string)
	_, err = v.Client.Logical().Write("identity/entity-alias", map[string]interface{}{
		"name": user, "canonical_id": id, "mount_accessor": accessor,
	})
	v.Must(t, err)
	return id
}

// userpassAccessor enables userpass at auth/userpass once and answers its accessor.
func (v *Vault) userpassAccessor(t T) string {
	t.Helper()
	auths, err := v.Client.Sys().ListAuth()
	v.Must(t, err)
	if a, ok := auths["userpass/"]; ok {
		return a.Accessor
	}
	v.Must(t, v.Client.Sys().EnableAuthWithOptions("userpass", &api.EnableAuthOptions{Type: "userpass"}))
	auths, err = v.Client.Sys().ListAuth()
	v.Must(t, err)
	return auths["userpass/"].Accessor
}

// Login signs in through userpass and answers a client for that person's token.
func (v *Vault) Login(t T, user, password string) *api.Client {
	t.Helper()
	c, err := v.Client.Clone()
	v.Must(t, err)
	c.ClearToken()
	sec, err := c.Logical().Write("auth/userpass/login/"+user, map[string]interface{}{"password": password})
	v.Must(t, err)
	if sec == nil || sec.Auth == nil {
		t.Fatal(fmt.Sprintf("userpass login %s: no token", user))
	}
	c.SetToken(sec.Auth.ClientToken)
	return c
}
