package backend_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func lookupEntry(t *testing.T, v *vaulttest.Vault, keyID string) wire.Entry {
	t.Helper()
	sec, err := v.Client.Logical().Read("apikeys/lookup/" + keyID)
	require.NoError(t, err)
	require.NotNil(t, sec, "lookup %s", keyID)
	raw, _ := json.Marshal(sec.Data)
	var e wire.Entry
	require.NoError(t, json.Unmarshal(raw, &e))
	return e
}

// openWithTransit proves a key still verifies: unwrap its data key with the real
// transit and open the sealed digest.
func openWithTransit(t *testing.T, v *vaulttest.Vault, key string) error {
	t.Helper()
	tok, err := token.Parse(key)
	require.NoError(t, err)
	e := lookupEntry(t, v, tok.KeyID)
	require.NotNil(t, e.Sealed)
	sec, err := v.Client.Logical().Write("transit/decrypt/apikeys", map[string]interface{}{"ciphertext": e.Sealed.WrappedDEK})
	if err != nil {
		return err
	}
	dek, err := base64.StdEncoding.DecodeString(sec.Data["plaintext"].(string))
	require.NoError(t, err)
	got, err := envelope.Open(dek, *e.Sealed, envelope.AAD(e.MountID, tok.KeyID))
	if err != nil {
		return err
	}
	want := tok.Digest()
	if !token.Equal(got, want[:]) {
		return fmt.Errorf("digest mismatch for %s", tok.KeyID)
	}
	return nil
}

func TestIntegrationRotationRunbook(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/dev", "permissions=a:read")
	oldKey := cliJSON(t, v, "write", "apikeys/tenants/acme/keys/svc", "role=dev")["data"].(map[string]interface{})["key"].(string)
	oldTok, _ := token.Parse(oldKey)
	// The grace is long enough for the checks below on a loaded machine.
	const grace = 8 * time.Second
	rotatedAt := time.Now()
	rot := cliJSON(t, v, "write", "apikeys/tenants/acme/keys/svc/rotate", "grace="+grace.String())["data"].(map[string]interface{})
	newKey := rot["key"].(string)
	newTok, _ := token.Parse(newKey)
	assert.NotEqual(t, oldTok.KeyID, newTok.KeyID)
	read := cliJSON(t, v, "read", "apikeys/tenants/acme/keys/svc")["data"].(map[string]interface{})
	assert.Equal(t, newTok.KeyID, read["key_id"])
	assert.Len(t, read["previous_keys"], 1, "both keys appear while both live")
	assert.Equal(t, "active", lookupEntry(t, v, oldTok.KeyID).Status)
	require.NoError(t, openWithTransit(t, v, oldKey))
	require.NoError(t, openWithTransit(t, v, newKey))

	time.Sleep(time.Until(rotatedAt.Add(grace + 1500*time.Millisecond)))
	res := tidy(t, v)
	assert.EqualValues(t, 1, res["grace_revoked"])
	assert.Equal(t, "revoked", lookupEntry(t, v, oldTok.KeyID).Status)
	assert.Equal(t, "active", lookupEntry(t, v, newTok.KeyID).Status)
}

func TestIntegrationOwnerBinding(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/dev", "permissions=a:read")
	require.NoError(t, v.Client.Sys().PutPolicy("issuer", `path "apikeys/tenants/acme/keys/*" { capabilities = ["create", "read", "update"] }`))
	require.NoError(t, v.Client.Sys().EnableAuthWithOptions("userpass", &api.EnableAuthOptions{Type: "userpass"}))
	_, err := v.Client.Logical().Write("auth/userpass/users/alice", map[string]interface{}{"password": "pw-alice", "policies": "issuer"})
	require.NoError(t, err)
	login, err := v.Client.Logical().Write("auth/userpass/login/alice", map[string]interface{}{"password": "pw-alice"})
	require.NoError(t, err)
	alice, err := v.Client.Clone()
	require.NoError(t, err)
	alice.SetToken(login.Auth.ClientToken)
	sec, err := alice.Logical().Write("apikeys/tenants/acme/keys/alices", map[string]interface{}{"role": "dev"})
	require.NoError(t, err)
	createdBy := sec.Data["created_by"].(map[string]interface{})
	entityID := login.Auth.EntityID
	require.NotEmpty(t, entityID)
	assert.Equal(t, entityID, createdBy["entity_id"])
	assert.NotEmpty(t, createdBy["display_name"])
	keyID := sec.Data["key_id"].(string)

	// Root's key has no entity and is never revoked by the job.
	cli(t, v, "write", "apikeys/tenants/acme/keys/roots", "role=dev")
	res := tidy(t, v)
	assert.EqualValues(t, 0, res["orphans_revoked"], "the entity still exists")

	// Without a grace: the job revokes at the first run that finds the entity gone
	// (the default orphan_grace waits 15m, see jobs_test.go).
	cli(t, v, "write", "apikeys/config", "orphan_grace=0")
	_, err = v.Client.Logical().Delete("identity/entity/id/" + entityID)
	require.NoError(t, err)
	res = tidy(t, v)
	assert.EqualValues(t, 1, res["orphans_revoked"])
	assert.Equal(t, "revoked", lookupEntry(t, v, keyID).Status)
	read, err := v.Client.Logical().Read("apikeys/tenants/acme/keys/roots")
	require.NoError(t, err)
	assert.Equal(t, "active", read.Data["status"])
}

func TestIntegrationRoleDowngrade(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/dev", "permissions=a:read,a:write")
	id := cliJSON(t, v, "write", "apikeys/tenants/acme/keys/k", "role=dev")["data"].(map[string]interface{})["key_id"].(string)
	assert.ElementsMatch(t, []string{"a:read", "a:write"}, lookupEntry(t, v, id).Permissions)
	head := lookupEntry(t, v, id).Seq
	cli(t, v, "write", "apikeys/roles/dev", "permissions=a:read")
	e := lookupEntry(t, v, id)
	assert.Equal(t, []string{"a:read"}, e.Permissions)
	assert.Greater(t, e.Seq, head)
	out, err := v.CLI(t, "delete", "apikeys/roles/dev")
	require.Error(t, err)
	assert.Contains(t, out, "revoke_keys=true")
	cli(t, v, "delete", "apikeys/roles/dev", "revoke_keys=true")
	assert.Equal(t, "revoked", lookupEntry(t, v, id).Status)
}

func TestIntegrationKEKRotationAndRewrap(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/dev", "permissions=*")
	var keys []string
	for i := 0; i < 6; i++ {
		sec, err := v.Client.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/k%d", i), map[string]interface{}{"role": "dev"})
		require.NoError(t, err)
		keys = append(keys, sec.Data["key"].(string))
	}
	cli(t, v, "write", "-f", "transit/keys/apikeys/rotate")
	res := cliJSON(t, v, "write", "-f", "apikeys/rewrap")["data"].(map[string]interface{})
	assert.EqualValues(t, 6, res["records_rewrapped"])
	cli(t, v, "write", "transit/keys/apikeys/config", "min_decryption_version=2")
	for _, k := range keys {
		tok, _ := token.Parse(k)
		assert.True(t, strings.HasPrefix(lookupEntry(t, v, tok.KeyID).Sealed.WrappedDEK, "vault:v2:"))
		assert.NoError(t, openWithTransit(t, v, k), "a live key must still verify after the old KEK version is retired")
	}
	// Keys issued after the rewrap are sealed under the new version too.
	sec, err := v.Client.Logical().Write("apikeys/tenants/acme/keys/after", map[string]interface{}{"role": "dev"})
	require.NoError(t, err)
	assert.NoError(t, openWithTransit(t, v, sec.Data["key"].(string)))
}

func TestIntegrationAuditLogNeverHoldsKeys(t *testing.T) {
	v := vaulttest.Start(t)
	auditPath := filepath.Join(v.Dir, "audit.log")
	require.NoError(t, v.Client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditPath}}))
	cli(t, v, "write", "apikeys/roles/dev", "permissions=*")
	var secrets []string
	for i := 0; i < 3; i++ {
		sec, err := v.Client.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/k%d", i), map[string]interface{}{"role": "dev"})
		require.NoError(t, err)
		key := sec.Data["key"].(string)
		tok, _ := token.Parse(key)
		secrets = append(secrets, key, tok.Secret)
	}
	rot, err := v.Client.Logical().Write("apikeys/tenants/acme/keys/k1/rotate", map[string]interface{}{"grace": "1h"})
	require.NoError(t, err)
	secrets = append(secrets, rot.Data["key"].(string))
	_, err = v.Client.Logical().Write("apikeys/revoke", map[string]interface{}{"key": secrets[0]})
	require.NoError(t, err)
	audit, err := os.ReadFile(auditPath)
	require.NoError(t, err)
	require.Contains(t, string(audit), "apikeys/tenants/acme/keys/k0", "the audit log must record the requests")
	for _, s := range secrets {
		assert.NotContains(t, string(audit), s)
	}
}
