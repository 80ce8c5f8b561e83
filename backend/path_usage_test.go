package backend

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
)

func TestUsageMergesAndShows(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	report := func(count int, at, from string) *logical.Response {
		return e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
			map[string]interface{}{"key_id": id, "count": count, "last_used_at": at, "last_used_from": from},
			map[string]interface{}{"key_id": "UNKNOWNUNKNOWN00", "count": 1, "last_used_at": at},
		}})
	}
	r := report(3, "2026-11-25T10:00:00Z", "203.0.113.9").Data
	assert.Equal(t, 1, r["recorded"])
	assert.Equal(t, 1, r["ignored"])
	report(2, "2026-11-25T09:00:00Z", "198.51.100.1") // older: count adds, last_used stays
	read := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data
	assert.EqualValues(t, 5, read["use_count"])
	assert.Equal(t, "2026-11-25T10:00:00Z", read["last_used_at"])
	assert.Equal(t, "203.0.113.9", read["last_used_from"])
	info := e.mustOK(logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{}).Data["key_info"].(map[string]interface{})["k"].(map[string]interface{})
	assert.EqualValues(t, 5, info["use_count"])
	assert.Equal(t, "203.0.113.9", info["last_used_from"])
}
