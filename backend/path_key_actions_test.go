package backend

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func (e *testEnv) lookupStatus(id string) string {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
	if resp == nil {
		return "not_found"
	}
	return resp.Data["status"].(string)
}

func (e *testEnv) lastOps(n int) []string {
	e.t.Helper()
	all := e.changes(0, "").Changes
	var ops []string
	for _, c := range all[max(0, len(all)-n):] {
		ops = append(ops, c.Op)
	}
	return ops
}

func TestDisableEnable(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil)
	assert.Equal(t, "disabled", e.mustOK(logical.ReadOperation, "keys/k", nil).Data["status"])
	assert.Equal(t, "disabled", e.lookupStatus(id))
	disabled := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{"status": "disabled"}).Data["keys"]
	assert.Equal(t, []string{"k"}, disabled)
	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil) // idempotent, no new change
	e.mustOK(logical.UpdateOperation, "keys/k/enable", nil)
	assert.Equal(t, "active", e.lookupStatus(id))
	assert.Equal(t, []string{"created", "disabled", "enabled"}, e.lastOps(3))
	e.mustFail(logical.UpdateOperation, "keys/ghost/disable", nil, "no live key")
}

func TestPatchOnlyAllowedFields(t *testing.T) {
	e := configured(t)
	id := e.issue("k", map[string]interface{}{"description": "first", "workspace": "prod"})["key_id"].(string)
	e.mustOK(logical.PatchOperation, "keys/k", map[string]interface{}{"description": "second", "allowed_cidrs": "10.0.0.0/8", "metadata": map[string]interface{}{"a": "b"}})
	rec := e.mustOK(logical.ReadOperation, "keys/k", nil).Data
	assert.Equal(t, "second", rec["description"])
	assert.Equal(t, []string{"10.0.0.0/8"}, rec["allowed_cidrs"])
	assert.Equal(t, map[string]string{"a": "b"}, rec["metadata"])
	assert.Equal(t, id, rec["key_id"], "patch never changes the secret")
	assert.Equal(t, []string{"updated"}, e.lastOps(1))
	before := e.snapshot()
	e.mustFail(logical.PatchOperation, "keys/k", map[string]interface{}{"role": "other"}, "cannot be patched")
	e.mustFail(logical.PatchOperation, "keys/k", map[string]interface{}{"workspace": "dev-x"}, "cannot be patched")
	e.mustFail(logical.PatchOperation, "keys/k", map[string]interface{}{"allowed_cidrs": "nope"}, "not a cidr")
	e.mustFail(logical.PatchOperation, "keys/k", map[string]interface{}{"description": string([]byte{1})}, "control")
	assert.Equal(t, before, e.snapshot())
}

func TestRotateWithGrace(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	first := e.issue("k", map[string]interface{}{"workspace": "prod", "metadata": map[string]interface{}{"team": "a"}})
	oldID := first["key_id"].(string)
	rot := e.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "24h"}).Data
	newKey := rot["key"].(string)
	tok, err := token.Parse(newKey)
	require.NoError(t, err)
	assert.NotEqual(t, oldID, tok.KeyID)
	assert.Equal(t, oldID, rot["previous_key_id"])
	assert.Equal(t, "prod", rot["workspace"])
	assert.Equal(t, map[string]string{"team": "a"}, rot["metadata"])

	read := e.mustOK(logical.ReadOperation, "keys/k", nil).Data
	assert.Equal(t, tok.KeyID, read["key_id"])
	prev := read["previous_keys"].([]map[string]interface{})
	require.Len(t, prev, 1)
	assert.Equal(t, oldID, prev[0]["key_id"])
	assert.Equal(t, "active", e.lookupStatus(oldID), "old key is valid during grace")
	assert.Equal(t, "active", e.lookupStatus(tok.KeyID))

	clock = clock.Add(23 * time.Hour)
	e.mustOK(logical.UpdateOperation, "tidy", nil)
	assert.Equal(t, "active", e.lookupStatus(oldID))
	clock = clock.Add(2 * time.Hour)
	assert.Equal(t, "expired", e.lookupStatus(oldID), "past grace it no longer verifies even before the job")
	res := e.mustOK(logical.UpdateOperation, "tidy", nil).Data
	assert.Equal(t, 1, toInt(res["grace_revoked"]))
	assert.Equal(t, "revoked", e.lookupStatus(oldID))
	assert.Equal(t, "active", e.lookupStatus(tok.KeyID))
	assert.Empty(t, e.mustOK(logical.ReadOperation, "keys/k", nil).Data["previous_keys"])
	// Deleting the name revokes every key_id it carries.
	e.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "1h"})
	e.mustOK(logical.DeleteOperation, "keys/k", nil)
	assert.Equal(t, "revoked", e.lookupStatus(tok.KeyID))
}

func TestRotateGraceIsBounded(t *testing.T) {
	e := configured(t)
	e.issue("k", nil)
	for i := 0; i < maxInGrace; i++ {
		e.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "1h"})
	}
	before := e.snapshot()
	e.mustFail(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "1h"}, "rotation grace")
	assert.Equal(t, before, e.snapshot())
	e.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "0"})
}

func TestRotateWithoutGraceRevokesAtOnce(t *testing.T) {
	e := configured(t)
	oldID := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "keys/k/rotate", nil)
	assert.Equal(t, "revoked", e.lookupStatus(oldID))
	e.mustFail(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "200h"}, "grace must be between")
	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil)
	e.mustFail(logical.UpdateOperation, "keys/k/rotate", nil, "only an active key")
}

func TestRevokeGraceKeyByID(t *testing.T) {
	e := configured(t)
	oldID := e.issue("k", nil)["key_id"].(string)
	e.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "1h"})
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": oldID})
	assert.Equal(t, "revoked", e.lookupStatus(oldID))
	read := e.mustOK(logical.ReadOperation, "keys/k", nil).Data
	assert.Empty(t, read["previous_keys"])
	assert.Equal(t, "active", read["status"], "revoking the old key leaves the name's current key alone")
}

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

func TestTTLRules(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.CreateOperation, "roles/forever", map[string]interface{}{"permissions": "*"})
	e.mustOK(logical.CreateOperation, "roles/short", map[string]interface{}{"permissions": "*", "ttl": "1h", "max_ttl": "2h"})
	assert.Equal(t, "", e.issue("a", map[string]interface{}{"role": "forever", "ttl": "0"})["expires_at"], "never expires where allowed")
	assert.Equal(t, "", e.issue("b", map[string]interface{}{"role": "forever"})["expires_at"])
	exp := e.issue("c", map[string]interface{}{"role": "short"})["expires_at"].(string)
	at, err := time.Parse(time.RFC3339, exp)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), at, time.Minute, "role ttl is the default")
	e.mustFail(logical.CreateOperation, "keys/d", map[string]interface{}{"role": "short", "ttl": "3h"}, "exceeds")
	// A mount max_ttl caps roles without one.
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_ttl": "10h"})
	e.mustFail(logical.CreateOperation, "keys/e", map[string]interface{}{"role": "forever", "ttl": "0"}, "never expires")
}

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
	read := e.mustOK(logical.ReadOperation, "keys/k", nil).Data
	assert.EqualValues(t, 5, read["use_count"])
	assert.Equal(t, "2026-11-25T10:00:00Z", read["last_used_at"])
	assert.Equal(t, "203.0.113.9", read["last_used_from"])
	info := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{}).Data["key_info"].(map[string]interface{})["k"].(map[string]interface{})
	assert.EqualValues(t, 5, info["use_count"])
	assert.Equal(t, "203.0.113.9", info["last_used_from"])
}

func TestReports(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	e.mustOK(logical.CreateOperation, "roles/forever", map[string]interface{}{"permissions": "*"})
	for i := 0; i < 5; i++ {
		e.issue(fmt.Sprintf("soon-%d", i), map[string]interface{}{"ttl": "24h"})
	}
	e.issue("later", map[string]interface{}{"ttl": "2000h"})
	e.issue("never", map[string]interface{}{"role": "forever"})
	page := e.mustOK(logical.ReadOperation, "report/expiring", map[string]interface{}{"within": "48h", "limit": 3}).Data
	assert.Equal(t, []string{"soon-0", "soon-1", "soon-2"}, page["keys"])
	assert.Equal(t, "soon-2", page["next"])
	rest := e.mustOK(logical.ReadOperation, "report/expiring", map[string]interface{}{"within": "48h", "after": "soon-2"}).Data
	assert.Equal(t, []string{"soon-3", "soon-4"}, rest["keys"])
	assert.Equal(t, "", rest["next"])

	usedID := e.mustOK(logical.ReadOperation, "keys/later", nil).Data["key_id"].(string)
	clock = clock.Add(10 * 24 * time.Hour)
	e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
		map[string]interface{}{"key_id": usedID, "count": 1, "last_used_at": clock.Format(time.RFC3339)}}})
	stale := e.mustOK(logical.ReadOperation, "report/stale", map[string]interface{}{"unused_for": "168h"}).Data
	assert.NotContains(t, stale["keys"], "later", "recently used")
	assert.Contains(t, stale["keys"], "never", "never used and older than the threshold")
	young := e.mustOK(logical.ReadOperation, "report/stale", map[string]interface{}{"unused_for": "720h"}).Data
	assert.Empty(t, young["keys"])
	e.mustFail(logical.ReadOperation, "report/stale", map[string]interface{}{"unused_for": "0"}, "positive")
}

func TestRewrapMovesEveryRecordToNewKEK(t *testing.T) {
	e := configured(t)
	var ids []string
	var toks []token.Token
	for i := 0; i < 5; i++ {
		data := e.issue(fmt.Sprintf("k%d", i), nil)
		tok, _ := token.Parse(data["key"].(string))
		ids, toks = append(ids, tok.KeyID), append(toks, tok)
	}
	e.mustOK(logical.DeleteOperation, "keys/k0", nil)
	e.sealer.rotate()
	res := e.mustOK(logical.UpdateOperation, "rewrap", nil).Data
	assert.Equal(t, 5, res["records_rewrapped"])
	cfg, _ := e.b.loadConfig(context.Background(), e.s)
	for i, id := range ids {
		rec, err := e.b.getRecord(context.Background(), e.s, id)
		require.NoError(t, err)
		assert.Contains(t, rec.Sealed.WrappedDEK, "vault:v2:")
		dek, err := e.sealer.unwrap(rec.Sealed.WrappedDEK)
		require.NoError(t, err)
		got, err := envelope.Open(dek, rec.Sealed, envelope.AAD(cfg.MountID, id))
		require.NoError(t, err)
		want := toks[i].Digest()
		assert.True(t, token.Equal(got, want[:]))
	}
	// New keys use a data key wrapped under the new version.
	id := e.issue("fresh", nil)["key_id"].(string)
	rec, _ := e.b.getRecord(context.Background(), e.s, id)
	assert.Contains(t, rec.Sealed.WrappedDEK, "vault:v2:")
}

func TestEventsSent(t *testing.T) {
	sender := logical.NewMockEventSender()
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.EventsSender = sender })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.CreateOperation, "roles/dev", map[string]interface{}{"permissions": "*"})
	e.issue("k", nil)
	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil)
	e.mustOK(logical.UpdateOperation, "keys/k/enable", nil)
	e.mustOK(logical.UpdateOperation, "keys/k/rotate", nil)
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "a:b"})
	e.mustOK(logical.DeleteOperation, "keys/k", nil)
	var types []string
	for _, ev := range sender.Events {
		types = append(types, string(ev.Type))
	}
	for _, want := range []string{"apikeys/key-created", "apikeys/key-disabled", "apikeys/key-enabled", "apikeys/key-rotated", "apikeys/role-updated", "apikeys/key-revoked"} {
		assert.Contains(t, types, want)
	}
	for _, ev := range sender.Events {
		assert.NotContains(t, ev.Event.Metadata.String(), "vak_", "events never carry a key")
	}
}

func TestEventFailureNeverFailsRequest(t *testing.T) {
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.EventsSender = failingSender{} })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.CreateOperation, "roles/dev", map[string]interface{}{"permissions": "*"})
	e.issue("k", nil)
	e.mustOK(logical.DeleteOperation, "keys/k", nil)
}

type failingSender struct{}

func (failingSender) SendEvent(context.Context, logical.EventType, *logical.EventData) error {
	return fmt.Errorf("event bus down")
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
