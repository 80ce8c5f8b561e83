package backend

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
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

// getCounter counts storage reads under a prefix.
type getCounter struct {
	logical.Storage
	prefix string
	gets   atomic.Int64
}

func (g *getCounter) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if strings.HasPrefix(key, g.prefix) {
		g.gets.Add(1)
	}
	return g.Storage.Get(ctx, key)
}

// A usage report reads and writes every key it names; on the active node the
// counts come from memory after the first report, so a report costs one
// storage write per key, not a read and a write.
func TestUsageReportsReadCountsFromMemory(t *testing.T) {
	store := &getCounter{Storage: &logical.InmemStorage{}, prefix: storageUsage}
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.StorageView = store })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	var ids []string
	for _, n := range []string{"a", "b", "c"} {
		ids = append(ids, e.issue(n, nil)["key_id"].(string))
	}
	report := func(at string) {
		var items []interface{}
		for _, id := range ids {
			items = append(items, map[string]interface{}{"key_id": id, "count": 2, "last_used_at": at})
		}
		require.Equal(t, len(ids), e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": items}).Data["recorded"])
	}
	report("2026-11-25T10:00:00Z")
	before := store.gets.Load()
	assert.Zero(t, before, "the first report of new keys read their counts from storage: a new key has none")
	report("2026-11-25T10:00:10Z")
	report("2026-11-25T10:00:20Z")
	assert.Equal(t, before, store.gets.Load(), "later reports read the counts from storage again")
	assert.EqualValues(t, 6, e.mustOK(logical.ReadOperation, "tenants/acme/keys/b", nil).Data["use_count"])

	// A write elsewhere (a replica's invalidation) drops the cached counts: the
	// next report reads storage and adds to what it holds.
	var stored wire.Usage
	_, err := getJSON(context.Background(), store.Storage, storageUsage+ids[1], &stored)
	require.NoError(t, err)
	stored.Count = 100
	require.NoError(t, putJSON(context.Background(), store.Storage, storageUsage+ids[1], &stored))
	e.b.Invalidate(context.Background(), storageUsage+ids[1])
	report("2026-11-25T10:00:30Z")
	assert.Equal(t, before+1, store.gets.Load())
	assert.EqualValues(t, 102, e.mustOK(logical.ReadOperation, "tenants/acme/keys/b", nil).Data["use_count"])
}

// overlapStorage holds each usage write until want of them are in flight at
// once, or until a bound passes (then the write goes on and overlap says so).
type overlapStorage struct {
	logical.Storage
	want     int32
	inFlight atomic.Int32
	all      chan struct{}
	once     atomic.Bool
	timedOut atomic.Bool
}

func (o *overlapStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, storageUsage) {
		if o.inFlight.Add(1) >= o.want && o.once.CompareAndSwap(false, true) {
			close(o.all)
		}
		if !o.timedOut.Load() {
			select {
			case <-o.all:
			case <-time.After(10 * time.Second):
				o.timedOut.Store(true)
			}
		}
		defer o.inFlight.Add(-1)
	}
	return o.Storage.Put(ctx, e)
}

// A report's keys are merged several at a time, not one after another, and
// every count still lands (a key named twice in one report adds both).
func TestUsageReportMergesKeysConcurrently(t *testing.T) {
	store := &overlapStorage{Storage: &logical.InmemStorage{}, want: 4, all: make(chan struct{})}
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.StorageView = store })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	var items []interface{}
	for i := range 12 {
		id := e.issue(fmt.Sprintf("k%d", i), nil)["key_id"].(string)
		items = append(items, map[string]interface{}{"key_id": id, "count": i + 1, "last_used_at": "2026-11-25T10:00:00Z"})
		if i == 0 {
			items = append(items, map[string]interface{}{"key_id": id, "count": 10, "last_used_at": "2026-11-25T10:00:01Z"})
		}
	}
	items = append(items, map[string]interface{}{"key_id": "UNKNOWNUNKNOWN00", "count": 1, "last_used_at": "2026-11-25T10:00:00Z"})
	got := e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": items}).Data
	assert.False(t, store.timedOut.Load(), "usage writes never overlapped: the report merged its keys one at a time")
	assert.Equal(t, 13, got["recorded"])
	assert.Equal(t, 1, got["ignored"])
	assert.EqualValues(t, 11, e.mustOK(logical.ReadOperation, "tenants/acme/keys/k0", nil).Data["use_count"])
	assert.EqualValues(t, 12, e.mustOK(logical.ReadOperation, "tenants/acme/keys/k11", nil).Data["use_count"])
}

// BenchmarkUsageReport sends a verifier's report of 100 keys, each counted
// before, to storage whose usage reads and writes sleep 100µs. "read-each"
// drops the cached counts before every report, so each key is read from
// storage as before the usage cache; "cached" merges the keys one at a time
// with the cache, as before they overlapped; "overlapped" is the plugin as it
// is. Each neighbouring pair is one change's before/after, measured in one run.
func BenchmarkUsageReport(b *testing.B) {
	for _, mode := range []string{"read-each", "cached", "overlapped"} {
		b.Run(mode, func(b *testing.B) {
			e := newTestEnvWith(b, func(c *logical.BackendConfig) {
				c.StorageView = slowStorage{Storage: &logical.InmemStorage{}, d: 100 * time.Microsecond, prefix: storageUsage, reads: true}
			})
			if mode != "overlapped" {
				e.b.usageWorkers = 1
			}
			e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
			e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
			var items []interface{}
			var ids []string
			for i := range 100 {
				id := e.issue(fmt.Sprintf("k%d", i), nil)["key_id"].(string)
				ids = append(ids, id)
				items = append(items, map[string]interface{}{"key_id": id, "count": 1, "last_used_at": "2026-11-25T10:00:00Z"})
			}
			report := map[string]interface{}{"usage": items}
			e.mustOK(logical.UpdateOperation, "usage", report)
			b.ResetTimer()
			for range b.N {
				if mode == "read-each" {
					for _, id := range ids {
						e.b.usage.Remove(id)
					}
				}
				e.mustOK(logical.UpdateOperation, "usage", report)
			}
		})
	}
}
