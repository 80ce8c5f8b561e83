package backend_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

type capability struct {
	op, path string
	data     map[string]interface{}
	allowed  bool
}

func clientWith(t *testing.T, v *vaulttest.Vault, policyFile string) *api.Client {
	t.Helper()
	c, err := v.Client.Clone()
	require.NoError(t, err)
	c.SetToken(v.TokenFromFile(t, policyFile))
	return c
}

func checkCapabilities(t *testing.T, c *api.Client, caps []capability) {
	t.Helper()
	for _, cp := range caps {
		var err error
		switch cp.op {
		case "read":
			_, err = c.Logical().Read(cp.path)
		case "list":
			_, err = c.Logical().List(cp.path)
		case "write":
			_, err = c.Logical().Write(cp.path, cp.data)
		case "delete":
			_, err = c.Logical().Delete(cp.path)
		}
		if err != nil && !strings.Contains(err.Error(), "permission denied") {
			t.Logf("%s %s: %v", cp.op, cp.path, err)
		}
		denied := err != nil && strings.Contains(err.Error(), "permission denied")
		if cp.allowed {
			assert.False(t, denied, "%s %s must be allowed: %v", cp.op, cp.path, err)
		} else {
			assert.True(t, denied, "%s %s must be denied, got %v", cp.op, cp.path, err)
		}
	}
}

// TestIntegrationLeastPrivilegePolicies proves each shipped policy allows its job and no more.
func TestIntegrationLeastPrivilegePolicies(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/dev", "permissions=*")
	sec, err := v.Client.Logical().Write("apikeys/tenants/acme/keys/existing", map[string]interface{}{"role": "dev"})
	require.NoError(t, err)
	keyID := sec.Data["key_id"].(string)
	wrapped := lookupEntry(t, v, keyID).Sealed.WrappedDEK

	t.Run("plugin transit token", func(t *testing.T) {
		checkCapabilities(t, clientWith(t, v, "policies/plugin-transit.hcl"), []capability{
			{"write", "transit/datakey/plaintext/apikeys", nil, true},
			{"write", "transit/rewrap/apikeys", map[string]interface{}{"ciphertext": wrapped}, true},
			{"write", "transit/decrypt/apikeys", map[string]interface{}{"ciphertext": wrapped}, false},
			{"write", "transit/keys/apikeys/rotate", nil, false},
			{"read", "apikeys/tenants/acme/keys/existing", nil, false},
			{"read", "apikeys/config", nil, false},
			{"list", "sys/policies/acl", nil, false},
		})
	})
	t.Run("key operator", func(t *testing.T) {
		checkCapabilities(t, clientWith(t, v, "policies/key-operator.hcl"), []capability{
			{"write", "apikeys/tenants/acme/keys/op-issued", map[string]interface{}{"role": "dev"}, true},
			{"read", "apikeys/tenants/acme/keys/op-issued", nil, true},
			{"list", "apikeys/tenants/acme/keys", nil, true},
			{"write", "apikeys/tenants/acme/keys/op-issued/disable", nil, true},
			{"delete", "apikeys/tenants/acme/keys/op-issued", nil, true},
			{"read", "apikeys/report/expiring", nil, true},
			{"write", "apikeys/roles/dev", map[string]interface{}{"permissions": "a:b"}, false},
			{"write", "apikeys/config", map[string]interface{}{"max_keys": 1}, false},
			{"read", "apikeys/config", nil, false},
			{"write", "apikeys/rewrap", nil, false},
			{"write", "transit/decrypt/apikeys", map[string]interface{}{"ciphertext": wrapped}, false},
		})
	})
	t.Run("auditor", func(t *testing.T) {
		checkCapabilities(t, clientWith(t, v, "policies/auditor.hcl"), []capability{
			{"list", "apikeys/tenants/acme/keys", nil, true},
			{"read", "apikeys/tenants/acme/keys/existing", nil, true},
			{"read", "apikeys/report/stale", nil, true},
			{"read", "apikeys/changes", nil, true},
			{"write", "apikeys/tenants/acme/keys/auditor-issued", map[string]interface{}{"role": "dev"}, false},
			{"delete", "apikeys/tenants/acme/keys/existing", nil, false},
			{"write", "apikeys/revoke", map[string]interface{}{"key_id": keyID}, false},
			{"write", "apikeys/tenants/acme/keys/existing/disable", nil, false},
			{"read", "apikeys/config", nil, false},
		})
	})
	t.Run("verifier", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(vaulttest.Root(), "policies/verifier.hcl")); err != nil {
			t.Fatalf("policies/verifier.hcl is missing: %v", err)
		}
		checkCapabilities(t, clientWith(t, v, "policies/verifier.hcl"), []capability{
			{"read", "apikeys/lookup/" + keyID, nil, true},
			{"read", "apikeys/lookup", map[string]interface{}{"key_ids": keyID}, true},
			{"write", "apikeys/lookup", map[string]interface{}{"key_ids": keyID}, true},
			{"read", "apikeys/changes", nil, true},
			{"write", "apikeys/usage", map[string]interface{}{"usage": []interface{}{}}, true},
			{"write", "transit/decrypt/apikeys", map[string]interface{}{"ciphertext": wrapped}, true},
			{"write", "apikeys/tenants/acme/keys/verifier-issued", map[string]interface{}{"role": "dev"}, false},
			{"delete", "apikeys/tenants/acme/keys/existing", nil, false},
			{"write", "apikeys/revoke", map[string]interface{}{"key_id": keyID}, false},
			{"read", "apikeys/tenants/acme/keys/existing", nil, false},
			{"write", "transit/datakey/plaintext/apikeys", nil, false},
		})
	})
	// Nothing the denied calls tried took effect.
	read, err := v.Client.Logical().Read("apikeys/tenants/acme/keys/existing")
	require.NoError(t, err)
	assert.Equal(t, "active", read.Data["status"])
}
