package backend

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"

	lru "github.com/hashicorp/golang-lru/v2"
)

// cacheStripes is how many write generations a readCache keeps: a write bumps
// the stripe of its key, so an unrelated write rarely costs a read its add.
const cacheStripes = 256

// readCache is a bounded read-through cache whose read path can never put back
// a value older than one a writer stored. A reader takes the key's generation
// before it reads storage and adds what it read only if no write or removal of
// that key (stripe) happened since; writers store under the same lock. Without
// this, a lookup that read the active record before a revoke could cache it
// after the revoke cached the revoked one (issue 14, defect 2).
type readCache[V any] struct {
	lru *lru.Cache[string, V]

	mu   sync.Mutex // orders generation checks against writes
	gens [cacheStripes]uint64
}

func newReadCache[V any](size int) *readCache[V] {
	c, err := lru.New[string, V](size)
	if err != nil {
		panic(err) // only for size <= 0: a programming error
	}
	return &readCache[V]{lru: c}
}

func stripe(key string) int {
	h := uint32(2166136261) // FNV-1a, without allocating
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % cacheStripes)
}

// Get returns the cached value of key.
func (c *readCache[V]) Get(key string) (V, bool) { return c.lru.Get(key) }

// Begin returns key's generation; take it before reading storage.
func (c *readCache[V]) Begin(key string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[stripe(key)]
}

// AddRead caches a value read from storage after Begin returned gen, unless a
// write or removal of the key happened since (the value may then be older).
func (c *readCache[V]) AddRead(key string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[stripe(key)] == gen {
		c.lru.Add(key, v)
	}
}

// Set caches a value a writer has just stored; reads in flight will not add theirs.
func (c *readCache[V]) Set(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[stripe(key)]++
	c.lru.Add(key, v)
}

// Remove drops key, and keeps reads in flight from adding it back.
func (c *readCache[V]) Remove(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[stripe(key)]++
	c.lru.Remove(key)
}

// readThrough reads the JSON value at storageKey through c, cached under
// cacheKey; nil (cached too) when storage has none.
func readThrough[V any](ctx context.Context, s logical.Storage, c *readCache[*V], cacheKey, storageKey string) (*V, error) {
	if v, ok := c.Get(cacheKey); ok {
		return v, nil
	}
	gen := c.Begin(cacheKey)
	var v V
	found, err := getJSON(ctx, s, storageKey, &v)
	if err != nil {
		return nil, err
	}
	var out *V
	if found {
		out = &v
	}
	c.AddRead(cacheKey, out, gen)
	return out, nil
}

// writeThrough stores v at storageKey and caches it under cacheKey; on a
// failed write the cached value is dropped (storage may or may not hold it).
func writeThrough[V any](ctx context.Context, s logical.Storage, c *readCache[*V], cacheKey, storageKey string, v *V) error {
	if err := putJSON(ctx, s, storageKey, v); err != nil {
		c.Remove(cacheKey)
		return err
	}
	c.Set(cacheKey, v)
	return nil
}

// deleteThrough deletes storageKey and caches its absence under cacheKey.
func deleteThrough[V any](ctx context.Context, s logical.Storage, c *readCache[*V], cacheKey, storageKey string) error {
	if err := s.Delete(ctx, storageKey); err != nil {
		c.Remove(cacheKey)
		return fmt.Errorf("delete %s: %w", storageKey, err)
	}
	c.Set(cacheKey, nil)
	return nil
}
