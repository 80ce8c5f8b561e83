package backend

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func (e *testEnv) lookup(keyID string) wire.Entry {
	e.t.Helper()
	raw, err := json.Marshal(e.mustOK(logical.ReadOperation, "lookup/"+keyID, nil).Data)
	require.NoError(e.t, err)
	var out wire.Entry
	require.NoError(e.t, json.Unmarshal(raw, &out))
	return out
}

// Narrowing a role's allowed_workspaces caps keys pinned to a workspace, as
// permissions and CIDRs do: the change is on the feed, and the lookup's answer
// no longer grants the dropped workspace.
func TestWorkspaceNarrowingCapsPinnedKeys(t *testing.T) {
	e := configured(t) // role dev allows prod, dev-*
	prod := e.issue("p", map[string]interface{}{"workspace": "prod"})["key_id"].(string)
	dev := e.issue("d", map[string]interface{}{"workspace": "dev-eu"})["key_id"].(string)
	before := e.lookup(prod)
	require.True(t, before.WorkspaceGrants("prod"))
	head := e.changes(0, "").Head

	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"allowed_workspaces": "dev-*"})

	feed := e.changes(head, "")
	require.Len(t, feed.Changes, 1)
	assert.Equal(t, wire.OpRoleUpdated, feed.Changes[0].Op)
	assert.Equal(t, "dev", feed.Changes[0].Role)
	p := e.lookup(prod)
	assert.GreaterOrEqual(t, p.Seq, feed.Changes[0].Seq)
	assert.False(t, p.WorkspaceGrants("prod"), "prod is no longer allowed by the role")
	d := e.lookup(dev)
	assert.True(t, d.WorkspaceGrants("dev-eu"), "dev-eu still is")
}

func (e *testEnv) lookupStatus(id string) string {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
	if resp == nil {
		return "not_found"
	}
	return resp.Data["status"].(string)
}

func TestSealedDigestOpensOnlyForItsKey(t *testing.T) {
	e := configured(t)
	data := e.issue("k", nil)
	tok, err := token.Parse(data["key"].(string))
	require.NoError(t, err)
	rec, err := e.b.getRecord(context.Background(), e.s, tok.KeyID)
	require.NoError(t, err)
	dek, err := e.sealer.unwrap(rec.Sealed.WrappedDEK)
	require.NoError(t, err)
	cfg, _ := e.b.loadConfig(context.Background(), e.s)
	got, err := envelope.Open(dek, rec.Sealed, envelope.AAD(cfg.MountID, tok.KeyID))
	require.NoError(t, err)
	want := tok.Digest()
	assert.True(t, token.Equal(got, want[:]))
	_, err = envelope.Open(dek, rec.Sealed, envelope.AAD("other-mount", tok.KeyID))
	assert.Error(t, err)
}

func TestBatchLookup(t *testing.T) {
	e := configured(t)
	a := e.issue("a", nil)["key_id"].(string)
	b := e.issue("b", nil)["key_id"].(string)
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/b", nil)
	data := e.mustOK(logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": []string{a, b, "ZZZZZZZZZZZZZZZZ"}}).Data
	entries := data["entries"].([]interface{})
	require.Len(t, entries, 3)
	status := func(i int) string { return entries[i].(map[string]interface{})["status"].(string) }
	assert.Equal(t, "active", status(0))
	assert.Equal(t, "revoked", status(1))
	assert.Equal(t, "not_found", status(2))
	assert.NotEmpty(t, data["seq"])
	assert.Nil(t, e.mustOK(logical.ReadOperation, "lookup/ZZZZZZZZZZZZZZZZ", nil))
}
