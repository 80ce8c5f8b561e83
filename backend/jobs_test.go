package backend

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// issueAs creates a key the way an entity's token would.
func (e *testEnv) issueAs(entityID, name string) string {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.CreateOperation, Path: "tenants/acme/keys/" + name, Storage: e.s,
		Data: map[string]interface{}{"role": "dev"}, EntityID: entityID, DisplayName: "alice",
	})
	require.NoError(e.t, err)
	require.False(e.t, resp.IsError(), "%v", resp.Error())
	return resp.Data["key_id"].(string)
}

func (e *testEnv) orphansRevoked() int {
	e.t.Helper()
	return toInt(e.tidy()["orphans_revoked"])
}

// Right after an unseal or a leadership change the identity store may not be
// loaded: an entity that looks absent then is not gone. (The test system view
// knows no entity, as a node that has not loaded identities yet.)
func TestOrphanJobWaitsAfterStart(t *testing.T) {
	e := configured(t)
	id := e.issueAs("ent-1", "k")
	assert.Equal(t, 0, e.orphansRevoked(), "the first run after start must not revoke")
	assert.Equal(t, wire.StatusActive, e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data["status"])
}

func TestOrphanJobNeedsAbsenceSpanningGrace(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	require.NoError(t, e.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: e.s}))
	loaded := false // the identity store finishes loading later
	var lookupErr error
	e.b.entityInfo = func(id string) (*logical.Entity, error) {
		if lookupErr != nil {
			return nil, lookupErr
		}
		if loaded && id == "ent-1" {
			return &logical.Entity{ID: id}, nil
		}
		return nil, nil
	}
	alive := e.issueAs("ent-1", "alive")
	gone := e.issueAs("ent-2", "gone")
	step := func(d time.Duration) int { clock = clock.Add(d); return e.orphansRevoked() }

	assert.Equal(t, 0, step(0))
	loaded = true
	assert.Equal(t, 0, step(10*time.Minute), "inside the start grace")
	lookupErr = errors.New("identity store unavailable")
	assert.Equal(t, 0, step(10*time.Minute), "an error decides nothing")
	lookupErr = nil
	assert.Equal(t, 0, step(time.Minute), "ent-2's streak restarted after the error")
	assert.Equal(t, 0, step(10*time.Minute), "absent for 10m of a 15m grace")
	assert.Equal(t, 1, step(5*time.Minute), "absent in consecutive runs spanning the grace")
	assert.Equal(t, wire.StatusRevoked, e.mustOK(logical.ReadOperation, "lookup/"+gone, nil).Data["status"])
	assert.Equal(t, wire.StatusActive, e.mustOK(logical.ReadOperation, "lookup/"+alive, nil).Data["status"],
		"ent-1 looked absent only before identities were loaded")

	// A leadership change starts the grace again.
	third := e.issueAs("ent-3", "third")
	require.NoError(t, e.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: e.s}))
	assert.Equal(t, 0, step(10*time.Minute), "inside the new start grace")
	assert.Equal(t, 0, step(6*time.Minute), "the streak began at the first run after the change")
	assert.Equal(t, 1, step(10*time.Minute))
	assert.Equal(t, wire.StatusRevoked, e.mustOK(logical.ReadOperation, "lookup/"+third, nil).Data["status"])
}

func TestOrphanGraceConfig(t *testing.T) {
	e := configured(t)
	assert.EqualValues(t, 900, e.mustOK(logical.ReadOperation, "config", nil).Data["orphan_grace"])
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"orphan_grace": "0"})
	e.b.entityInfo = func(string) (*logical.Entity, error) { return nil, nil }
	e.issueAs("ent-1", "k")
	assert.Equal(t, 1, e.orphansRevoked(), "orphan_grace=0 revokes at the first run")
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"orphan_grace": "-1"}, "negative")
}

func TestExpiryIsEnforcedAndAnnounced(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	id := e.issue("k", map[string]interface{}{"ttl": "1h"})["key_id"].(string)
	clock = clock.Add(61 * time.Minute)
	assert.Equal(t, "expired", e.lookupStatus(id))
	assert.Equal(t, "expired", e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["status"])
	res := e.tidy()
	assert.Equal(t, 1, toInt(res["expired_announced"]))
	assert.Equal(t, []string{"expired"}, e.lastOps(1))
	again := e.tidy()
	assert.Equal(t, 0, toInt(again["expired_announced"]), "announced once")
	e.mustFail(logical.UpdateOperation, "tenants/acme/keys/k/enable", nil, "expired")
}
