package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// entities is a stand-in identity store: entity id → platform role metadata.
type entities map[string]string

func (es entities) info(id string) (*logical.Entity, error) {
	role, ok := es[id]
	if !ok {
		return nil, nil
	}
	md := map[string]string{"tenant": "acme"}
	if role != "" {
		md["apikeys_role"] = role
	}
	return &logical.Entity{ID: id, Name: id, Metadata: md}, nil
}

func (e *testEnv) issueBy(entityID, name, role string) (map[string]interface{}, error) {
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.CreateOperation, Path: "tenants/acme/keys/" + name, Storage: e.s,
		Data: map[string]interface{}{"role": role}, EntityID: entityID, DisplayName: "userpass-" + entityID,
	})
	if resp != nil && resp.IsError() {
		err = resp.Error()
	}
	if err != nil {
		return nil, err
	}
	return resp.Data, nil
}

// YugabyteDB's rule: a key never has more rights than its creator has now.
func TestCreatorCeiling(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "roles/admin", map[string]interface{}{"permissions": "*"})
	e.mustOK(logical.UpdateOperation, "roles/developer", map[string]interface{}{"permissions": "clusters:read"})
	ids := entities{"alice": "admin", "bob": "", "mallory": "no-such-role"}
	e.b.entityInfo = ids.info

	created, err := e.issueBy("alice", "a1", "admin")
	require.NoError(t, err)
	id := created["key_id"].(string)
	assert.Equal(t, "admin", created["creator_role"])
	assert.Equal(t, "alice", created["created_by"].(map[string]interface{})["display_name"])
	assert.Equal(t, []string{"*"}, e.lookup(id).Permissions)

	// Alice drops to developer: the next creator pass caps her key and says so on the feed.
	ids["alice"] = "developer"
	head := e.changes(0, "").Head
	run := e.tidy()
	assert.EqualValues(t, 1, toInt(run["ceilings_applied"]))
	entry := e.lookup(id)
	assert.Equal(t, []string{"clusters:read"}, entry.Permissions)
	assert.Equal(t, "developer", entry.CreatorRole)
	ch := e.changes(head, "").Changes
	require.Len(t, ch, 1)
	assert.Equal(t, id, ch[0].KeyID)
	assert.Equal(t, wire.OpUpdated, ch[0].Op)
	assert.EqualValues(t, 0, toInt(e.tidy()["ceilings_applied"]), "nothing changed: nothing to apply")

	// Narrowing the ceiling role itself caps at once (the lookup reads it live).
	e.mustOK(logical.UpdateOperation, "roles/developer", map[string]interface{}{"permissions": "clusters:list"})
	assert.Equal(t, []string{"clusters:list"}, e.lookup(id).Permissions)

	// A creator without the metadata sets no ceiling; one naming an unknown
	// role cannot issue (the key would grant nothing).
	b1, err := e.issueBy("bob", "b1", "admin")
	require.NoError(t, err)
	assert.Equal(t, []string{"*"}, e.lookup(b1["key_id"].(string)).Permissions)
	before := e.snapshot()
	_, err = e.issueBy("mallory", "m1", "admin")
	require.ErrorContains(t, err, `platform role "no-such-role"`)
	assert.Equal(t, before, e.snapshot())

	// Metadata changed to an unknown role after issuance caps to nothing.
	ids["bob"] = "no-such-role"
	e.tidy()
	assert.Empty(t, e.lookup(b1["key_id"].(string)).Permissions)
}

// The periodic job examines a bounded number of creators per run and
// continues where it stopped; a tidy examines all.
func TestCreatorPassIsBounded(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "roles/admin", map[string]interface{}{"permissions": "*"})
	e.mustOK(logical.UpdateOperation, "roles/developer", map[string]interface{}{"permissions": "clusters:read"})
	ids := entities{"e1": "admin", "e2": "admin", "e3": "admin"}
	e.b.entityInfo = ids.info
	for _, who := range []string{"e1", "e2", "e3"} {
		_, err := e.issueBy(who, "k-"+who, "admin")
		require.NoError(t, err)
	}
	cfg, err := e.b.loadConfig(context.Background(), e.s)
	require.NoError(t, err)
	for who := range ids {
		ids[who] = "developer"
	}
	calls := 0
	e.b.entityInfo = func(id string) (*logical.Entity, error) { calls++; return ids.info(id) }
	pass := func() int {
		e.b.tidyMu.Lock()
		defer e.b.tidyMu.Unlock()
		res, err := e.b.checkCreators(context.Background(), e.s, cfg, 2)
		require.NoError(t, err)
		return res.ceilingsMoved
	}
	assert.Equal(t, 2, pass(), "the first run examines two creators")
	assert.Equal(t, 2, calls)
	assert.Equal(t, 1, pass(), "the next run continues with the third")
	assert.Equal(t, 3, calls)
	assert.Equal(t, 0, pass(), "then starts over: nothing left to change")
}
