package backend

import (
	"bytes"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
)

// lockedBuffer is a log sink tests can read while the backend writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// A full key pasted where a key_id (or a name) belongs is never quoted back:
// not in the error answer, not in the plugin's log.
func TestPastedKeyIsNeverEchoed(t *testing.T) {
	logs := &lockedBuffer{}
	e := newTestEnvWith(t, func(c *logical.BackendConfig) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace})
	})
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	key := e.issue("a", nil)["key"].(string)
	tok, err := token.Parse(key)
	require.NoError(t, err)
	mistyped := key[:len(key)-1] + "x" // checksum wrong: still carries the secret
	if mistyped == key {
		mistyped = key[:len(key)-1] + "y"
	}

	for _, pasted := range []string{key, mistyped, "  " + key, key + ".old"} {
		cases := []struct {
			name string
			op   logical.Operation
			path string
			data map[string]interface{}
		}{
			{"revoke key_id", logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": pasted}},
			{"lookup path", logical.ReadOperation, "lookup/" + pasted, nil},
			{"batch lookup", logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": []string{tok.KeyID, pasted}}},
			{"usage", logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
				map[string]interface{}{"key_id": pasted, "count": 1, "last_used_at": "2026-01-01T00:00:00Z"}}}},
			{"usage count", logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
				map[string]interface{}{"key_id": tok.KeyID, "count": pasted, "last_used_at": "2026-01-01T00:00:00Z"}}}},
			{"key name", logical.ReadOperation, "tenants/acme/keys/" + pasted, nil},
			{"disable by name", logical.UpdateOperation, "tenants/acme/keys/" + pasted + "/disable", nil},
			{"role name", logical.UpdateOperation, "roles/" + pasted, map[string]interface{}{"permissions": "x:y"}},
		}
		for _, c := range cases {
			resp, err := e.do(c.op, c.path, c.data)
			var answer string
			if err != nil {
				answer += err.Error()
			}
			if resp != nil && resp.IsError() {
				answer += resp.Error().Error()
				for _, w := range resp.Warnings {
					answer += w
				}
			}
			assert.NotEmpty(t, answer, "%s: a pasted key must be rejected", c.name)
			assert.NotContains(t, answer, tok.Secret, "%s echoed the secret: %s", c.name, answer)
		}
	}
	assert.NotContains(t, logs.String(), tok.Secret)
	// The key was not revoked by any of this.
	st := e.mustOK(logical.ReadOperation, "lookup/"+tok.KeyID, nil).Data["status"]
	assert.Equal(t, "active", st)
}

func TestLooksLikeKey(t *testing.T) {
	tok, err := token.Generate("ak")
	require.NoError(t, err)
	for _, s := range []string{tok.String(), "x" + tok.String(), tok.String() + "-y", "name_" + tok.String()} {
		assert.True(t, looksLikeKey(s), s)
	}
	for _, s := range []string{"ci-deploy", tok.KeyID, "ak_" + tok.KeyID} {
		assert.False(t, looksLikeKey(s), s)
	}
}
