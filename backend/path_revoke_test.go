package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestRevokeGraceKeyByID(t *testing.T) {
	e := configured(t)
	oldID := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "1h"})
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": oldID})
	assert.Equal(t, "revoked", e.lookupStatus(oldID))
	read := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data
	assert.Empty(t, read["previous_keys"])
	assert.Equal(t, "active", read["status"], "revoking the old key leaves the name's current key alone")
}

func TestRevokeByIDAndLeakedKey(t *testing.T) {
	e := configured(t)
	a := e.issue("a", nil)
	bKey := e.issue("b", nil)["key"].(string)
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": a["key_id"]})
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key": bKey})
	keys := e.mustOK(logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{}).Data["keys"]
	assert.Empty(t, keys)
	again := e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key": bKey}).Data
	assert.Equal(t, true, again["already_revoked"])
	// A well-formed key with a bad checksum is rejected before any lookup.
	bad := bKey[:len(bKey)-6] + "000000"
	e.mustFail(logical.UpdateOperation, "revoke", map[string]interface{}{"key": bad}, "checksum")
}

// Defect 1 (issue 14): the record is written revoked, the feed append fails;
// the retry must publish what was written.
func TestRetryPublishesRevocationWhoseAppendFailed(t *testing.T) {
	for _, how := range []string{"revoke key_id", "vault delete"} {
		t.Run(how, func(t *testing.T) {
			e := configured(t)
			id := e.issue("k", nil)["key_id"].(string)
			fs := withFaults(e)
			head := e.changes(0, "").Head
			revoke := func() (*logical.Response, error) {
				if how == "vault delete" {
					return e.do(logical.DeleteOperation, "tenants/acme/keys/k", nil)
				}
				return e.do(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": id})
			}
			fs.failFeed.Store(1)
			_, err := revoke()
			require.Error(t, err, "the append failed, so the request fails")
			require.Equal(t, wire.StatusRevoked, e.lookupStatus(id), "the record was written")
			require.False(t, e.published(head, id, wire.OpRevoked))

			resp, err := revoke()
			require.NoError(t, err)
			require.False(t, resp.IsError(), "%v", resp.Error())
			assert.True(t, e.published(head, id, wire.OpRevoked), "the retry publishes the written revocation")
		})
	}
}
