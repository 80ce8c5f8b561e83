package backend

import (
	"context"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pausingStorage holds the first Get of one storage key after it has read the
// value, until released: the read is then older than anything written meanwhile.
type pausingStorage struct {
	logical.Storage
	key     string
	once    sync.Once
	paused  chan struct{}
	release chan struct{}
}

func pauseFirstGet(s logical.Storage, key string) *pausingStorage {
	return &pausingStorage{Storage: s, key: key, paused: make(chan struct{}), release: make(chan struct{})}
}

func (p *pausingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := p.Storage.Get(ctx, key)
	if key == p.key {
		p.once.Do(func() {
			close(p.paused)
			<-p.release
		})
	}
	return entry, err
}

// A lookup that missed the cache and read the active record must not put it
// back after a revoke cached the revoked one.
func TestLookupReadDoesNotOverwriteNewerRecord(t *testing.T) {
	e := configured(t)
	id := e.issue("a", nil)["key_id"].(string)
	e.b.records.Remove(id) // as after eviction or a restart

	ps := pauseFirstGet(e.s, storageKeyPrefix+id)
	done := make(chan *logical.Response)
	go func() {
		resp, _ := e.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: "lookup/" + id, Storage: ps})
		done <- resp
	}()
	<-ps.paused // the lookup holds the active record, not yet cached
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": id})
	close(ps.release)
	stale := asVaultSees(t, <-done)
	require.NotNil(t, stale)
	assert.Equal(t, "active", stale.Data["status"], "the raced lookup itself read before the revoke")

	got := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
	assert.Equal(t, "revoked", got.Data["status"], "a later lookup must see the revoke")
}

// Same for roles: a downgrade is never lost to a read that began before it.
func TestRoleReadDoesNotOverwriteNewerRole(t *testing.T) {
	e := configured(t)
	id := e.issue("a", nil)["key_id"].(string)
	e.b.roles.Remove("dev")

	ps := pauseFirstGet(e.s, storageRolePrefix+"dev")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = e.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: "lookup/" + id, Storage: ps})
	}()
	<-ps.paused
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	close(ps.release)
	<-done

	got := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
	assert.Equal(t, []interface{}{"clusters:read"}, got.Data["permissions"])
}
