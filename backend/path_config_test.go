package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
)

func TestMissingConfig(t *testing.T) {
	e := newTestEnv(t)
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev"}, "not configured")
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"token": "t"}, "vault_addr is required")
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://a"}, "token is required")
	assert.Empty(t, e.snapshot())
}

func TestConfigTokenIsWriteOnly(t *testing.T) {
	e := configured(t)
	data := e.mustOK(logical.ReadOperation, "config", nil).Data
	assert.NotContains(t, data, "token")
	assert.Equal(t, true, data["token_set"])
	assert.Equal(t, "transit", data["transit_mount"])
	assert.Equal(t, 0, data["max_keys"], "the whole mount: no limit by default")
	assert.Equal(t, 10000, data["max_keys_per_tenant"], "every tenant: Neon's recommended 10,000")
	assert.Equal(t, "apikeys_role", data["creator_role_key"])
	assert.NotEmpty(t, data["mount_id"])
	// A second write keeps the mount id (records stay bound to it).
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys": 5})
	assert.Equal(t, data["mount_id"], e.mustOK(logical.ReadOperation, "config", nil).Data["mount_id"])
}

// ca_cert takes PEM certificates only, is shown on read (it is not secret) and
// can be cleared.
func TestConfigCACert(t *testing.T) {
	e := configured(t)
	f := newFakeTransitTLS(t)
	before := e.snapshot()
	for _, bad := range []string{"not pem", "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", f.caPEM() + "junk"} {
		e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"ca_cert": bad}, "ca_cert")
	}
	assert.Equal(t, before, e.snapshot(), "a refused ca_cert changes nothing")
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"ca_cert": f.caPEM() + f.caPEM()})
	assert.Equal(t, f.caPEM()+f.caPEM(), e.mustOK(logical.ReadOperation, "config", nil).Data["ca_cert"])
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"ca_cert": ""})
	assert.Equal(t, "", e.mustOK(logical.ReadOperation, "config", nil).Data["ca_cert"])
}
