package backend

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestEffectivePermissionsFollowRole(t *testing.T) {
	e := configured(t)
	id := e.issue("k", map[string]interface{}{"workspace": "prod"})["key_id"].(string)
	lk := e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data
	assert.ElementsMatch(t, []interface{}{"clusters:read", "clusters:write"}, lk["permissions"])
	head := e.b.feed.head
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	lk = e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data
	assert.Equal(t, []interface{}{"clusters:read"}, lk["permissions"])
	ch := e.mustOK(logical.ReadOperation, "changes", map[string]interface{}{"after": fmt.Sprint(head)}).Data["changes"].([]interface{})
	require.Len(t, ch, 1)
	assert.Equal(t, wire.OpRoleUpdated, ch[0].(map[string]interface{})["op"])
	assert.Equal(t, "dev", ch[0].(map[string]interface{})["role"])
}

func TestRoleDeleteWithKeys(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	e.mustFail(logical.DeleteOperation, "roles/dev", nil, "still has 1 live keys")
	e.mustOK(logical.DeleteOperation, "roles/dev", map[string]interface{}{"revoke_keys": true})
	lk := e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data
	assert.Equal(t, wire.StatusRevoked, lk["status"])
	assert.Nil(t, e.mustOK(logical.ReadOperation, "roles/dev", nil))
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
			_, _ = e.do(logical.CreateOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "tmp"})
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
			_, _ = e.do(logical.CreateOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "tmp"})
		}()
		go func() {
			defer wg.Done()
			_, _ = e.do(logical.DeleteOperation, "roles/tmp", nil)
		}()
		wg.Wait()
		e.assertNoKeyWithoutRole("k", "tmp")
		_, _ = e.do(logical.DeleteOperation, "tenants/acme/keys/k", nil)
		_, _ = e.do(logical.DeleteOperation, "roles/tmp", nil)
	}
}

func (e *testEnv) assertNoKeyWithoutRole(name, role string) {
	e.t.Helper()
	r, err := e.do(logical.ReadOperation, "roles/"+role, nil)
	require.NoError(e.t, err)
	k, err := e.do(logical.ReadOperation, "tenants/acme/keys/"+name, nil)
	require.NoError(e.t, err)
	if r == nil && k != nil {
		e.t.Fatalf("key %s is %v under deleted role %s", name, k.Data["status"], role)
	}
}

// waitShort bounds how long the race hook holds a create; it bounds the test,
// it is no assertion.
func waitShort() <-chan time.Time { return time.After(100 * time.Millisecond) }
