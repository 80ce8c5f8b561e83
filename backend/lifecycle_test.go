package backend

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func (e *testEnv) lastOps(n int) []string {
	e.t.Helper()
	all := e.changes(0, "").Changes
	var ops []string
	for _, c := range all[max(0, len(all)-n):] {
		ops = append(ops, c.Op)
	}
	return ops
}

// Defect 7 (issue 14): what is done to a name applies to every key of it,
// rotated-out keys still in grace included.
func TestNameActionsReachKeysInGrace(t *testing.T) {
	e := configured(t)
	oldID := e.issue("k", nil)["key_id"].(string)
	newID := e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "1h"}).Data["key_id"].(string)
	require.Equal(t, wire.StatusActive, e.lookupStatus(oldID))

	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	assert.Equal(t, wire.StatusDisabled, e.lookupStatus(newID))
	assert.Equal(t, wire.StatusDisabled, e.lookupStatus(oldID), "the key in grace is disabled too")

	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/enable", nil)
	assert.Equal(t, wire.StatusActive, e.lookupStatus(oldID), "and enabled again")

	e.mustOK(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"allowed_cidrs": "10.1.0.0/16"})
	for _, id := range []string{newID, oldID} {
		resp := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
		assert.Equal(t, []interface{}{"10.1.0.0/16"}, resp.Data["allowed_cidrs"], "key %s", id)
	}

	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k", nil)
	assert.Equal(t, wire.StatusRevoked, e.lookupStatus(oldID))
	assert.Equal(t, wire.StatusRevoked, e.lookupStatus(newID))
}

// Every mutation answers the seq of its feed entry (DESIGN §4).
func TestEveryMutationAnswersItsSeq(t *testing.T) {
	e := configured(t)
	entryAt := func(seq uint64) wire.Change {
		t.Helper()
		for _, c := range e.changes(seq-1, "").Changes {
			if c.Seq == seq {
				return c
			}
		}
		t.Fatalf("no feed entry at seq %d", seq)
		return wire.Change{}
	}
	seqOf := func(resp *logical.Response) uint64 {
		t.Helper()
		require.NotNil(t, resp)
		seq, ok := resp.Data["seq"].(uint64)
		require.True(t, ok, "seq is a uint64: %#v", resp.Data["seq"])
		return seq
	}
	created := e.mustOK(logical.CreateOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "dev"})
	id := created.Data["key_id"].(string)
	assert.Equal(t, wire.Change{Seq: seqOf(created), KeyID: id, Role: "dev", Op: wire.OpCreated}, withoutTime(entryAt(seqOf(created))))

	for _, step := range []struct {
		op   logical.Operation
		path string
		data map[string]interface{}
		want string
	}{
		{logical.UpdateOperation, "tenants/acme/keys/k/disable", nil, wire.OpDisabled},
		{logical.UpdateOperation, "tenants/acme/keys/k/enable", nil, wire.OpEnabled},
		{logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"description": "x"}, wire.OpUpdated},
		{logical.UpdateOperation, "tenants/acme/keys/k/rotate", nil, wire.OpCreated},
		{logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"}, wire.OpRoleUpdated},
		{logical.DeleteOperation, "tenants/acme/keys/k", nil, wire.OpRevoked},
	} {
		resp := e.mustOK(step.op, step.path, step.data)
		seq := seqOf(resp)
		assert.Equal(t, step.want, entryAt(seq).Op, "%s %s", step.op, step.path)
		assert.Equal(t, e.changes(0, "").Head, seq, "%s %s: its entry is the newest", step.op, step.path)
	}
	id2 := e.issue("k2", nil)["key_id"].(string)
	resp := e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": id2})
	assert.Equal(t, id2, entryAt(seqOf(resp)).KeyID)
	again := e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": id2})
	assert.Equal(t, true, again.Data["already_revoked"])
	assert.GreaterOrEqual(t, seqOf(again), seqOf(resp), "a no-op answers a seq at or after the change")
	e.mustOK(logical.UpdateOperation, "roles/gone", map[string]interface{}{"permissions": "*"})
	del := e.mustOK(logical.DeleteOperation, "roles/gone", nil)
	assert.Equal(t, wire.OpRoleDeleted, entryAt(seqOf(del)).Op)
}

// withoutTime keeps what identifies an entry.
func withoutTime(c wire.Change) wire.Change {
	return wire.Change{Seq: c.Seq, KeyID: c.KeyID, Role: c.Role, Op: c.Op}
}

// storedKeys lists the storage keys under prefix.
func (e *testEnv) storedKeys(prefix string) []string {
	e.t.Helper()
	keys, err := e.s.List(context.Background(), prefix)
	require.NoError(e.t, err)
	return keys
}

// unpublishedMarks lists every stored publish mark of a key change: a key's
// own marks and the shared marks of creates.
func (e *testEnv) unpublishedMarks() []string {
	return append(e.storedKeys(storageUnpublishedKey), e.storedKeys(storageUnpublishedCreates)...)
}

// A create whose record is written but whose name write fails leaves no
// active record behind: the create drops it at once, or, when that cleanup
// fails too, the repair pass (tidy) does, and nothing is announced for it.
func TestFailedNameWriteLeavesNoActiveRecord(t *testing.T) {
	for _, cleanupFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("cleanup fails=%v", cleanupFails), func(t *testing.T) {
			e := configured(t)
			fs := withFaults(e)
			head := e.changes(0, "").Head
			fs.failPut = func(key string) bool { return key == storageNamePrefix+"acme/x" }
			if cleanupFails {
				fs.failDelete = func(key string) bool { return strings.HasPrefix(key, storageKeyPrefix) }
			}
			_, err := e.do(logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "ttl": "1h"})
			require.Error(t, err)
			fs.failPut, fs.failDelete = nil, nil
			if cleanupFails {
				require.Len(t, e.storedKeys(storageKeyPrefix), 1, "the cleanup failed: the record is still there")
			}
			e.tidy()
			assert.Empty(t, e.storedKeys(storageKeyPrefix), "no record without its name")
			assert.Empty(t, e.storedKeys(storageExpPrefix), "nor its expiry entry")
			assert.Empty(t, e.unpublishedMarks(), "nor its publish mark")
			assert.Empty(t, e.changes(head, "").Changes, "a key never shown is never announced")
			e.issue("x", nil) // the name is free
		})
	}
}

// A rotation with grace 0 moves the name to the new key before it revokes the
// old one. When that revocation's write fails, the old key is active, no
// longer named, and marked for a revocation: the repair pass completes the
// revocation and announces it, as the rotation asked. It used to take the old
// record for an unfinished create (its last op was its creation) and delete
// it without a feed entry, so verifiers that had it cached kept answering
// VALID until their MaxAge.
func TestRepairCompletesTheRevocationOfAFailedRotation(t *testing.T) {
	e := configured(t)
	old := e.issue("k", nil)["key_id"].(string)
	fs := withFaults(e)
	head := e.changes(0, "").Head
	fs.failPut = func(key string) bool { return key == storageKeyPrefix+old }
	_, err := e.do(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "0"})
	require.Error(t, err)
	fs.failPut = nil
	e.b.records.Remove(old) // as after a restart: what storage holds is what counts
	rec, err := e.b.getRecord(context.Background(), e.s, old)
	require.NoError(t, err)
	require.NotNil(t, rec)
	require.Equal(t, wire.StatusActive, rec.Status, "the revocation's write failed")

	e.tidy()
	rec, err = e.b.getRecord(context.Background(), e.s, old)
	require.NoError(t, err)
	require.NotNil(t, rec, "the old key is revoked, not deleted")
	assert.Equal(t, wire.StatusRevoked, rec.Status)
	assert.True(t, e.published(head, old, wire.OpRevoked), "and verifiers are told")
	assert.Empty(t, e.unpublishedMarks())
	lookup := e.mustOK(logical.ReadOperation, "lookup/"+old, nil).Data
	assert.Equal(t, wire.StatusRevoked, lookup["status"])
}

// When the rotation fails before the name moves, the old key is still the
// name's: the rotation did not happen, and the repair pass leaves it active.
func TestRepairLeavesTheKeyOfARotationThatNeverMoved(t *testing.T) {
	e := configured(t)
	old := e.issue("k", nil)["key_id"].(string)
	fs := withFaults(e)
	fs.failPut = func(key string) bool { return key == storageNamePrefix+"acme/k" }
	_, err := e.do(logical.UpdateOperation, "tenants/acme/keys/k/rotate", map[string]interface{}{"grace": "0"})
	require.Error(t, err)
	fs.failPut = nil
	e.tidy()
	rec, err := e.b.getRecord(context.Background(), e.s, old)
	require.NoError(t, err)
	require.NotNil(t, rec)
	assert.Equal(t, wire.StatusActive, rec.Status)
	assert.Equal(t, old, e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["key_id"])
	assert.Empty(t, e.unpublishedMarks())
}
