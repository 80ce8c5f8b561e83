package backend

import (
	"encoding/json"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
