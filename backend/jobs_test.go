package backend

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
)

func TestExpiryIsEnforcedAndAnnounced(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	id := e.issue("k", map[string]interface{}{"ttl": "1h"})["key_id"].(string)
	clock = clock.Add(61 * time.Minute)
	assert.Equal(t, "expired", e.lookupStatus(id))
	assert.Equal(t, "expired", e.mustOK(logical.ReadOperation, "keys/k", nil).Data["status"])
	res := e.mustOK(logical.UpdateOperation, "tidy", nil).Data
	assert.Equal(t, 1, toInt(res["expired_announced"]))
	assert.Equal(t, []string{"expired"}, e.lastOps(1))
	again := e.mustOK(logical.UpdateOperation, "tidy", nil).Data
	assert.Equal(t, 0, toInt(again["expired_announced"]), "announced once")
	e.mustFail(logical.UpdateOperation, "keys/k/enable", nil, "expired")
}
