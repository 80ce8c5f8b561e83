package backend

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestFeedPublishesAfterRecordIsWritten(t *testing.T) {
	e := configured(t)
	id := e.issue("a", nil)["key_id"].(string)
	next := e.changes(0, "").Head + 1
	// Wrap storage so that, at the moment the feed entry for the revocation is
	// written, we can check the record already says revoked.
	checked := false
	e.s = &watchStorage{Storage: e.s, onPut: func(key string) {
		if key == feedKey(next) {
			rec, err := e.b.getRecord(context.Background(), e.s, id)
			require.NoError(t, err)
			assert.Equal(t, wire.StatusRevoked, rec.Status)
			checked = true
		}
	}}
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/a", nil)
	assert.True(t, checked)
}

type watchStorage struct {
	logical.Storage
	onPut func(key string)
}

func (w *watchStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	w.onPut(entry.Key)
	return w.Storage.Put(ctx, entry)
}

func TestEventsSent(t *testing.T) {
	sender := logical.NewMockEventSender()
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.EventsSender = sender })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.CreateOperation, "roles/dev", map[string]interface{}{"permissions": "*"})
	e.issue("k", nil)
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/enable", nil)
	e.mustOK(logical.PatchOperation, "tenants/acme/keys/k", map[string]interface{}{"description": "patched"})
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/rotate", nil)
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "a:b"})
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k", nil)
	var types []string
	for _, ev := range sender.Events {
		types = append(types, string(ev.Type))
	}
	for _, want := range []string{"apikeys/key-created", "apikeys/key-disabled", "apikeys/key-enabled", "apikeys/key-updated", "apikeys/key-rotated", "apikeys/role-updated", "apikeys/key-revoked"} {
		assert.Contains(t, types, want)
	}
	for _, ev := range sender.Events {
		assert.NotContains(t, ev.Event.Metadata.String(), "vak_", "events never carry a key")
		if !strings.HasPrefix(string(ev.Type), "apikeys/key-") {
			continue
		}
		md := ev.Event.Metadata.AsMap()
		for _, field := range []string{"key_id", "tenant", "name", "role"} {
			assert.NotEmpty(t, md[field], "%s carries %s", ev.Type, field)
		}
		if ev.Type == "apikeys/key-rotated" {
			assert.NotEmpty(t, md["previous_key_id"], "a rotation names the key it replaced")
		}
	}
}

// A change whose publish failed is announced by its repair with the event its
// commit would have sent: the same type and the same fields, tenant included.
func TestRepairedKeyEventsMatchTheirCommitEvents(t *testing.T) {
	sender := logical.NewMockEventSender()
	e := configuredWith(t, func(c *logical.BackendConfig) { c.EventsSender = sender })
	fs := withFaults(e)
	sender.Events = nil // the role's event
	fs.failFeed.Store(1)
	_, err := e.do(logical.CreateOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "dev"})
	require.Error(t, err)
	keyID := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["key_id"].(string)
	require.Empty(t, sender.Events, "a create not published sends no event")
	require.Equal(t, "1", fmt.Sprint(e.tidy()["republished"]), "the repair pass announces the create")

	fs.failFeed.Store(1)
	_, err = e.do(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil)
	require.Error(t, err)
	require.Len(t, sender.Events, 1, "a disable not published sends no event")
	e.mustOK(logical.UpdateOperation, "tenants/acme/keys/k/disable", nil) // the retry announces the disable
	want := map[string]interface{}{"key_id": keyID, "tenant": "acme", "name": "k", "role": "dev"}
	var types []string
	for _, ev := range sender.Events {
		types = append(types, string(ev.Type))
		assert.Equal(t, want, ev.Event.Metadata.AsMap(), string(ev.Type))
	}
	assert.Equal(t, []string{"apikeys/key-created", "apikeys/key-disabled"}, types)
}

func TestEventFailureNeverFailsRequest(t *testing.T) {
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.EventsSender = failingSender{} })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.CreateOperation, "roles/dev", map[string]interface{}{"permissions": "*"})
	e.issue("k", nil)
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k", nil)
}

type failingSender struct{}

func (failingSender) SendEvent(context.Context, logical.EventType, *logical.EventData) error {
	return fmt.Errorf("event bus down")
}

// faultStorage fails feed appends on demand and lets a test hold a write.
type faultStorage struct {
	logical.Storage
	failFeed atomic.Int32 // this many feed entry writes fail
	onPut    func(key string)
	onDelete func(key string)
	// failPut and failDelete, when set, fail the writes they answer true for.
	failPut    func(key string) bool
	failDelete func(key string) bool
}

func (f *faultStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if strings.HasPrefix(entry.Key, storageFeedPrefix) && f.failFeed.Add(-1) >= 0 {
		return errStorageDown
	}
	if f.failPut != nil && f.failPut(entry.Key) {
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
	if f.failDelete != nil && f.failDelete(key) {
		return errStorageDown
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
			_, err = e.do(logical.UpdateOperation, "tenants/acme/keys/d/disable", nil)
			require.Error(t, err)
			fs.failFeed.Store(1)
			_, err = e.do(logical.DeleteOperation, "roles/dev", map[string]interface{}{"revoke_keys": false})
			require.Error(t, err, "refused: the role still has keys")
			fs.failFeed.Store(0)

			if pass == "tidy" {
				e.tidy()
			} else {
				require.NoError(t, e.b.periodic(context.Background(), &logical.Request{Storage: e.s}))
			}
			assert.True(t, e.published(head, revokedID, wire.OpRevoked))
			assert.True(t, e.published(head, disabledID, wire.OpDisabled))
			// A second pass has nothing left to publish.
			head = e.changes(0, "").Head
			e.tidy()
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
	e.tidy()
	ops := []string{}
	for _, c := range e.changes(head, "").Changes {
		ops = append(ops, c.Role+" "+c.Op)
	}
	assert.Equal(t, []string{"dev role-updated"}, ops)
}

// ctxStorage honours cancellation like Vault's real storage, and cancels the
// request (a client disconnecting) right after the first record write.
type ctxStorage struct {
	logical.Storage
	cancel context.CancelFunc
}

func (c *ctxStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := c.Storage.Put(ctx, entry)
	if strings.HasPrefix(entry.Key, storageKeyPrefix) {
		c.cancel()
	}
	return err
}

// Defect 1 (issue 14), the disconnect case: once the record is written, the
// client going away does not stop its publish.
func TestDisconnectAfterRecordWriteStillPublishes(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	head := e.changes(0, "").Head
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _ = e.b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "revoke",
		Data: map[string]interface{}{"key_id": id}, Storage: &ctxStorage{Storage: e.s, cancel: cancel}})
	require.Equal(t, wire.StatusRevoked, e.lookupStatus(id), "the record was written")
	assert.True(t, e.published(head, id, wire.OpRevoked), "and published despite the disconnect")
}
