package backend

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestTombstonesPurgedAfterRetention(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	id := e.issue("a", nil)["key_id"].(string)
	e.mustOK(logical.DeleteOperation, "keys/a", nil)
	assert.Equal(t, 0, toInt(e.mustOK(logical.UpdateOperation, "tidy", nil).Data["tombstones_purged"]))
	assert.Equal(t, "revoked", e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data["status"])
	clock = clock.Add(721 * time.Hour)
	assert.Equal(t, 1, toInt(e.mustOK(logical.UpdateOperation, "tidy", nil).Data["tombstones_purged"]))
	assert.Nil(t, e.mustOK(logical.ReadOperation, "lookup/"+id, nil))
}

func TestOrphanJobSkipsLiveEntities(t *testing.T) {
	e := configured(t)
	// logical.TestSystemView knows no entities; a key with no creating entity
	// is never an orphan.
	e.issue("k", nil)
	res := e.mustOK(logical.UpdateOperation, "tidy", nil).Data
	assert.Equal(t, 0, toInt(res["orphans_revoked"]))
	assert.Equal(t, wire.StatusActive, e.mustOK(logical.ReadOperation, "keys/k", nil).Data["status"])
}
