package backend_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// The plugin's operational messages reach Vault's log at Vault's default
// level (info): go-plugin relays only hclog JSON lines at their own level.
func TestIntegrationPluginLogsVisible(t *testing.T) {
	v := vaulttest.Start(t)
	// config written (info), then transit made to fail: the next data key
	// cannot be had, and the plugin warns.
	cli(t, v, "write", "apikeys/config", "dek_max_uses=1")
	cli(t, v, "write", "apikeys/roles/r", "permissions=*")
	cli(t, v, "write", "transit/keys/apikeys/config", "deletion_allowed=true")
	cli(t, v, "delete", "transit/keys/apikeys")
	failed := false
	for i := 0; i < 3 && !failed; i++ { // the prepared key, if any, is spent first
		_, err := v.Client.Logical().Write("apikeys/tenants/acme/keys/k"+string(rune('a'+i)), map[string]interface{}{"role": "r"})
		failed = err != nil
	}
	require.True(t, failed, "issuing without a transit key fails")

	pluginLine := func(level, msg string) bool {
		for _, line := range strings.Split(v.Log(), "\n") {
			if strings.Contains(line, "["+level+"]") && strings.Contains(line, "vault-plugin-secrets-apikeys") && strings.Contains(line, msg) {
				return true
			}
		}
		return false
	}
	assert.Eventually(t, func() bool { return pluginLine("INFO", "config written") }, 10*time.Second, 50*time.Millisecond,
		"plugin info line in Vault's log:\n%s", v.Log())
	assert.Eventually(t, func() bool { return pluginLine("WARN", "transit unreachable") }, 10*time.Second, 50*time.Millisecond,
		"plugin warning in Vault's log:\n%s", v.Log())
}
