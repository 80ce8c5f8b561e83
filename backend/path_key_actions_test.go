package backend

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestDisableEnable(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	assert.Equal(t, "disabled", e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["status"])
	assert.Equal(t, "disabled", e.lookupStatus(id))
	disabled := e.mustOK(logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{"status": "disabled"}).Data["keys"]
	assert.Equal(t, []string{"k"}, disabled)
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil) // idempotent, no new change
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/enable", nil)
	assert.Equal(t, "active", e.lookupStatus(id))
	assert.Equal(t, []string{"created", "disabled", "enabled"}, e.lastOps(3))
	e.mustFail(logical.UpdateOperation, "tenants/acme/keys/ghost/disable", nil, "no live key")
}

func TestPatchOnlyAllowedFields(t *testing.T) {
	e := configured(t)
	id := e.issue("k", map[string]interface{}{"description": "first", "workspace": "prod"})["key_id"].(string)
	e.mustOK(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"description": "second", "allowed_cidrs": "10.0.0.0/8", "metadata": map[string]interface{}{"a": "b"}})
	rec := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data
	assert.Equal(t, "second", rec["description"])
	assert.Equal(t, []string{"10.0.0.0/8"}, rec["allowed_cidrs"])
	assert.Equal(t, map[string]string{"a": "b"}, rec["metadata"])
	assert.Equal(t, id, rec["key_id"], "patch never changes the secret")
	assert.Equal(t, []string{"updated"}, e.lastOps(1))
	before := e.snapshot()
	e.mustFail(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "other"}, "cannot be patched")
	e.mustFail(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"workspace": "dev-x"}, "cannot be patched")
	e.mustFail(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"allowed_cidrs": "nope"}, "not a cidr")
	e.mustFail(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"description": string([]byte{1})}, "control")
	assert.Equal(t, before, e.snapshot())
}

func TestRotateWithGrace(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	first := e.issue("k", map[string]interface{}{"workspace": "prod", "metadata": map[string]interface{}{"team": "a"}})
	oldID := first["key_id"].(string)
	rot := e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "24h"}).Data
	newKey := rot["key"].(string)
	tok, err := token.Parse(newKey)
	require.NoError(t, err)
	assert.NotEqual(t, oldID, tok.KeyID)
	assert.Equal(t, oldID, rot["previous_key_id"])
	assert.Equal(t, "prod", rot["workspace"])
	assert.Equal(t, map[string]string{"team": "a"}, rot["metadata"])

	read := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data
	assert.Equal(t, tok.KeyID, read["key_id"])
	prev := read["previous_keys"].([]map[string]interface{})
	require.Len(t, prev, 1)
	assert.Equal(t, oldID, prev[0]["key_id"])
	assert.Equal(t, "active", e.lookupStatus(oldID), "old key is valid during grace")
	assert.Equal(t, "active", e.lookupStatus(tok.KeyID))

	clock = clock.Add(23 * time.Hour)
	e.tidy()
	assert.Equal(t, "active", e.lookupStatus(oldID))
	clock = clock.Add(2 * time.Hour)
	assert.Equal(t, "expired", e.lookupStatus(oldID), "past grace it no longer verifies even before the job")
	res := e.tidy()
	assert.Equal(t, 1, toInt(res["grace_revoked"]))
	assert.Equal(t, "revoked", e.lookupStatus(oldID))
	assert.Equal(t, "active", e.lookupStatus(tok.KeyID))
	assert.Empty(t, e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["previous_keys"])
	// Deleting the name revokes every key_id it carries.
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "1h"})
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k", nil)
	assert.Equal(t, "revoked", e.lookupStatus(tok.KeyID))
}

func TestRotateGraceIsBounded(t *testing.T) {
	e := configured(t)
	e.issue("k", nil)
	for i := 0; i < maxInGrace; i++ {
		e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "1h"})
	}
	before := e.snapshot()
	e.mustFail(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "1h"}, "rotation grace")
	assert.Equal(t, before, e.snapshot())
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "0"})
}

func TestRotateWithoutGraceRevokesAtOnce(t *testing.T) {
	e := configured(t)
	oldID := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", nil)
	assert.Equal(t, "revoked", e.lookupStatus(oldID))
	e.mustFail(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "200h"}, "grace must be between")
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	e.mustFail(logical.UpdateOperation, "tenants/acme/keys/k/rotate", nil, "only an active key")
}

func TestRetryPublishesDisableWhoseAppendFailed(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	fs := withFaults(e)
	head := e.changes(0, "").Head
	fs.failFeed.Store(1)
	_, err := e.do(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	require.Error(t, err)
	require.Equal(t, wire.StatusDisabled, e.lookupStatus(id))
	require.False(t, e.published(head, id, wire.OpDisabled))

	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	assert.True(t, e.published(head, id, wire.OpDisabled), "the retry publishes the written disable")
	// Once published, a further retry publishes nothing more.
	head = e.changes(0, "").Head
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	assert.Equal(t, head, e.changes(0, "").Head)
}
