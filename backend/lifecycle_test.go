package backend

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// faultStorage fails feed appends on demand and lets a test hold a write.
type faultStorage struct {
	logical.Storage
	failFeed atomic.Int32 // this many feed entry writes fail
	onPut    func(key string)
	onDelete func(key string)
}

func (f *faultStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if strings.HasPrefix(entry.Key, storageFeedPrefix) && f.failFeed.Add(-1) >= 0 {
		return errStorageDown
	}
	if f.onPut != nil {
		f.onPut(entry.Key)
	}
	return f.Storage.Put(ctx, entry)
}

func (f *faultStorage) Delete(ctx context.Context, key string) error {
	if f.onDelete != nil {
		f.onDelete(key)
	}
	return f.Storage.Delete(ctx, key)
}

var errStorageDown = errString("storage unavailable")

type errString string

func (e errString) Error() string { return string(e) }

func withFaults(e *testEnv) *faultStorage {
	fs := &faultStorage{Storage: e.s}
	e.s = fs
	return fs
}

// published reports whether the feed has op for keyID after seq.
func (e *testEnv) published(after uint64, keyID, op string) bool {
	e.t.Helper()
	for _, c := range e.changes(after, "").Changes {
		if c.KeyID == keyID && c.Op == op {
			return true
		}
	}
	return false
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
					return e.do(logical.DeleteOperation, "keys/k", nil)
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

func TestRetryPublishesDisableWhoseAppendFailed(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	fs := withFaults(e)
	head := e.changes(0, "").Head
	fs.failFeed.Store(1)
	_, err := e.do(logical.UpdateOperation, "keys/k/disable", nil)
	require.Error(t, err)
	require.Equal(t, wire.StatusDisabled, e.lookupStatus(id))
	require.False(t, e.published(head, id, wire.OpDisabled))

	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil)
	assert.True(t, e.published(head, id, wire.OpDisabled), "the retry publishes the written disable")
	// Once published, a further retry publishes nothing more.
	head = e.changes(0, "").Head
	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil)
	assert.Equal(t, head, e.changes(0, "").Head)
}

// Without a retry, the repair pass (tidy and the periodic job) publishes it.
func TestRepairPassPublishesUnpublishedChanges(t *testing.T) {
	for _, pass := range []string{"tidy", "periodic"} {
		t.Run(pass, func(t *testing.T) {
			e := configured(t)
			revokedID := e.issue("r", nil)["key_id"].(string)
			disabledID := e.issue("d", nil)["key_id"].(string)
			fs := withFaults(e)
			head := e.changes(0, "").Head
			fs.failFeed.Store(1)
			_, err := e.do(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": revokedID})
			require.Error(t, err)
			fs.failFeed.Store(1)
			_, err = e.do(logical.UpdateOperation, "keys/d/disable", nil)
			require.Error(t, err)
			fs.failFeed.Store(1)
			_, err = e.do(logical.DeleteOperation, "roles/dev", map[string]interface{}{"revoke_keys": false})
			require.Error(t, err, "refused: the role still has keys")
			fs.failFeed.Store(0)

			if pass == "tidy" {
				e.mustOK(logical.UpdateOperation, "tidy", nil)
			} else {
				require.NoError(t, e.b.periodic(context.Background(), &logical.Request{Storage: e.s}))
			}
			assert.True(t, e.published(head, revokedID, wire.OpRevoked))
			assert.True(t, e.published(head, disabledID, wire.OpDisabled))
			// A second pass has nothing left to publish.
			head = e.changes(0, "").Head
			e.mustOK(logical.UpdateOperation, "tidy", nil)
			assert.Equal(t, head, e.changes(0, "").Head)
		})
	}
}

func TestRepairPassPublishesRoleChange(t *testing.T) {
	e := configured(t)
	fs := withFaults(e)
	head := e.changes(0, "").Head
	fs.failFeed.Store(1)
	_, err := e.do(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	require.Error(t, err)
	e.mustOK(logical.UpdateOperation, "tidy", nil)
	ops := []string{}
	for _, c := range e.changes(head, "").Changes {
		ops = append(ops, c.Role+" "+c.Op)
	}
	assert.Equal(t, []string{"dev role-updated"}, ops)
}

// Defect 7 (issue 14): what is done to a name applies to every key of it,
// rotated-out keys still in grace included.
func TestNameActionsReachKeysInGrace(t *testing.T) {
	e := configured(t)
	oldID := e.issue("k", nil)["key_id"].(string)
	newID := e.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]interface{}{"grace": "1h"}).Data["key_id"].(string)
	require.Equal(t, wire.StatusActive, e.lookupStatus(oldID))

	e.mustOK(logical.UpdateOperation, "keys/k/disable", nil)
	assert.Equal(t, wire.StatusDisabled, e.lookupStatus(newID))
	assert.Equal(t, wire.StatusDisabled, e.lookupStatus(oldID), "the key in grace is disabled too")

	e.mustOK(logical.UpdateOperation, "keys/k/enable", nil)
	assert.Equal(t, wire.StatusActive, e.lookupStatus(oldID), "and enabled again")

	e.mustOK(logical.PatchOperation, "keys/k", map[string]interface{}{"allowed_cidrs": "10.1.0.0/16"})
	for _, id := range []string{newID, oldID} {
		resp := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
		assert.Equal(t, []interface{}{"10.1.0.0/16"}, resp.Data["allowed_cidrs"], "key %s", id)
	}

	e.mustOK(logical.DeleteOperation, "keys/k", nil)
	assert.Equal(t, wire.StatusRevoked, e.lookupStatus(oldID))
	assert.Equal(t, wire.StatusRevoked, e.lookupStatus(newID))
}

// Defect 9 (issue 14): recreating a role publishes, like every role change.
func TestRoleRecreatePublishes(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "roles/tmp", map[string]interface{}{"permissions": "a:read"})
	e.mustOK(logical.DeleteOperation, "roles/tmp", nil)
	head := e.changes(0, "").Head
	e.mustOK(logical.UpdateOperation, "roles/tmp", map[string]interface{}{"permissions": "*"})
	got := e.changes(head, "").Changes
	require.Len(t, got, 1, "recreating a role re-grants: verifiers must hear of it")
	assert.Equal(t, "tmp", got[0].Role)
	assert.Equal(t, wire.OpRoleUpdated, got[0].Op)
}

// Defect 9 (issue 14): a role delete racing a key create never leaves a live
// key under a deleted role. The storage hook holds the create just before its
// record is written until the delete has removed the role (or 100 ms passed,
// when the delete waits for the create as it must).
func TestRoleDeleteRacingCreateLeavesNoOrphanKey(t *testing.T) {
	for i := 0; i < 5; i++ {
		e := configured(t)
		e.mustOK(logical.UpdateOperation, "roles/tmp", map[string]interface{}{"permissions": "*"})
		fs := withFaults(e)
		writing, roleGone := make(chan struct{}), make(chan struct{})
		var once, goneOnce sync.Once
		fs.onPut = func(key string) {
			if strings.HasPrefix(key, storageKeyPrefix) {
				once.Do(func() {
					close(writing)
					select {
					case <-roleGone:
					case <-waitShort():
					}
				})
			}
		}
		fs.onDelete = func(key string) {
			if key == storageRolePrefix+"tmp" {
				goneOnce.Do(func() { close(roleGone) })
			}
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = e.do(logical.CreateOperation, "keys/k", map[string]interface{}{"role": "tmp"})
		}()
		go func() {
			defer wg.Done()
			<-writing
			_, _ = e.do(logical.DeleteOperation, "roles/tmp", nil)
		}()
		wg.Wait()
		e.assertNoKeyWithoutRole("k", "tmp")
	}
}

// The same race, free-running, many times.
func TestRoleDeleteRacingCreateManyTimes(t *testing.T) {
	e := configured(t)
	for i := 0; i < 200; i++ {
		e.mustOK(logical.UpdateOperation, "roles/tmp", map[string]interface{}{"permissions": "*"})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, _ = e.do(logical.CreateOperation, "keys/k", map[string]interface{}{"role": "tmp"})
		}()
		go func() {
			defer wg.Done()
			_, _ = e.do(logical.DeleteOperation, "roles/tmp", nil)
		}()
		wg.Wait()
		e.assertNoKeyWithoutRole("k", "tmp")
		_, _ = e.do(logical.DeleteOperation, "keys/k", nil)
		_, _ = e.do(logical.DeleteOperation, "roles/tmp", nil)
	}
}

func (e *testEnv) assertNoKeyWithoutRole(name, role string) {
	e.t.Helper()
	r, err := e.do(logical.ReadOperation, "roles/"+role, nil)
	require.NoError(e.t, err)
	k, err := e.do(logical.ReadOperation, "keys/"+name, nil)
	require.NoError(e.t, err)
	if r == nil && k != nil {
		e.t.Fatalf("key %s is %v under deleted role %s", name, k.Data["status"], role)
	}
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
	created := e.mustOK(logical.CreateOperation, "keys/k", map[string]interface{}{"role": "dev"})
	id := created.Data["key_id"].(string)
	assert.Equal(t, wire.Change{Seq: seqOf(created), KeyID: id, Role: "dev", Op: wire.OpCreated}, withoutTime(entryAt(seqOf(created))))

	for _, step := range []struct {
		op   logical.Operation
		path string
		data map[string]interface{}
		want string
	}{
		{logical.UpdateOperation, "keys/k/disable", nil, wire.OpDisabled},
		{logical.UpdateOperation, "keys/k/enable", nil, wire.OpEnabled},
		{logical.PatchOperation, "keys/k", map[string]interface{}{"description": "x"}, wire.OpUpdated},
		{logical.UpdateOperation, "keys/k/rotate", nil, wire.OpCreated},
		{logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"}, wire.OpRoleUpdated},
		{logical.DeleteOperation, "keys/k", nil, wire.OpRevoked},
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

// waitShort bounds how long the race hook holds a create; it bounds the test,
// it is no assertion.
func waitShort() <-chan time.Time { return time.After(100 * time.Millisecond) }
