package verifier

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func rec(id, role string) *cachedKey {
	r := &cachedKey{keyID: id, grants: &grants{entry: wire.Entry{Role: role}}, hasDigest: true}
	copy(r.digest[:], id)
	return r
}

func TestCacheRefusesEntriesOlderThanAnEviction(t *testing.T) {
	now := time.Now()
	c := newCache(100)
	c.EvictKey("a", 10, now)
	assert.False(t, c.Insert(rec("a", "r"), 9), "read before change 10: may be stale")
	assert.True(t, c.Insert(rec("a", "r"), 10), "read at change 10: reflects it")
	assert.True(t, c.Insert(rec("b", "r"), 1), "other keys are unaffected")

	c.EvictRole("r", 20, now)
	assert.Zero(t, c.Len(), "a role change drops its keys")
	assert.False(t, c.Insert(rec("b", "r"), 19))
	assert.True(t, c.Insert(rec("c", "s"), 19), "other roles are unaffected")
	assert.True(t, c.Insert(rec("b", "r"), 20))

	c.Flush(30)
	assert.Zero(t, c.Len())
	assert.False(t, c.Insert(rec("d", "s"), 29), "a reset refuses everything older")
	assert.True(t, c.Insert(rec("d", "s"), 30))
}

func TestCreatedKeepsAFoundKeyAndDropsANotFound(t *testing.T) {
	now := time.Now()
	c := newCache(100)
	// A key verified at once: its record was read after it was written, so its
	// creation coming through the feed later drops nothing.
	require.True(t, c.Insert(rec("a", "r"), 10))
	c.Created("a", 11, now)
	assert.NotNil(t, c.Get("a"), "the first verdict of a new key stays cached")
	// An id asked for before it was issued: that NOT_FOUND goes.
	nf := &cachedKey{keyID: "b", status: statusNotFound}
	require.True(t, c.Insert(nf, 10))
	c.Created("b", 12, now)
	assert.Nil(t, c.Get("b"), "a NOT_FOUND older than the creation is dropped")
	// Lookups that read the feed before the creation are refused, as after an eviction.
	assert.False(t, c.Insert(&cachedKey{keyID: "b", status: statusNotFound}, 11))
	assert.True(t, c.Insert(rec("b", "r"), 12))
}

func TestCacheForgetsOldMarksButKeepsAFloor(t *testing.T) {
	start := time.Now()
	c := newCache(100)
	c.EvictKey("a", 5, start)
	c.EvictKey("b", 6, start.Add(markTTL+time.Second)) // forgets mark 5
	assert.NotContains(t, c.keyMarks, "a")
	assert.False(t, c.Insert(rec("a", "r"), 4), "the floor still refuses what the mark refused")
	assert.True(t, c.Insert(rec("a", "r"), 5))
}

func TestCacheIsBounded(t *testing.T) {
	c := newCache(cacheShards) // one per shard
	for i := range 1000 {
		c.Insert(rec(string(rune('A'+i%50))+string(rune('a'+i/50)), "r"), 1)
	}
	assert.LessOrEqual(t, c.Len(), cacheShards)
}

// tenantRec is rec of tenant, created by a holder of creatorRole.
func tenantRec(id, role, tenant, creatorRole string) *cachedKey {
	r := rec(id, role)
	r.grants.entry.CreatorRole = creatorRole
	r.tenant = &tenantBlock{name: tenant}
	return r
}

func TestCacheEvictTenantRefusesOlderEntries(t *testing.T) {
	now := time.Now()
	c := newCache(100)
	require.True(t, c.Insert(tenantRec("a", "r", "acme", ""), 1))
	require.True(t, c.Insert(tenantRec("b", "r", "globex", ""), 1))
	require.True(t, c.Insert(rec("c", "r"), 1))

	c.EvictTenant("acme", 10, now)
	assert.Nil(t, c.Get("a"), "a tenant change drops the tenant's keys")
	assert.NotNil(t, c.Get("b"), "other tenants are unaffected")
	assert.NotNil(t, c.Get("c"), "keys naming no tenant are unaffected")
	assert.False(t, c.Insert(tenantRec("a", "r", "acme", ""), 9), "a lookup answered before the change may be stale")
	assert.False(t, c.Insert(tenantRec("d", "r", "acme", ""), 9), "for every key of the tenant")
	assert.True(t, c.Insert(tenantRec("e", "r", "globex", ""), 9))
	assert.True(t, c.Insert(tenantRec("a", "r", "acme", ""), 10), "read at the change: reflects it")

	// Forgotten after markTTL, the floor still refuses what the mark refused.
	c.EvictKey("z", 11, now.Add(markTTL+time.Second))
	assert.NotContains(t, c.tenantMarks, "acme")
	assert.False(t, c.Insert(tenantRec("f", "r", "acme", ""), 9))

	c.EvictTenant("globex", 20, now)
	c.Flush(21)
	assert.Empty(t, c.tenantMarks, "a flush clears the tenant marks (its floor refuses instead)")
}

func TestCacheEvictRoleTakesTheKeysItsHoldersCreated(t *testing.T) {
	now := time.Now()
	c := newCache(100)
	require.True(t, c.Insert(tenantRec("a", "ops", "acme", "lead"), 1))
	require.True(t, c.Insert(tenantRec("b", "ops", "acme", "dev"), 1))
	c.EvictRole("lead", 10, now)
	assert.Nil(t, c.Get("a"), "the creator's role changed: its ceiling may have narrowed")
	assert.NotNil(t, c.Get("b"))
	assert.False(t, c.Insert(tenantRec("a", "ops", "acme", "lead"), 9), "a lookup answered before the creator's role change")
	assert.True(t, c.Insert(tenantRec("b2", "ops", "acme", "dev"), 9))
	assert.True(t, c.Insert(tenantRec("a", "ops", "acme", "lead"), 10))
}

func TestRevokedKeepsAFoundKeyRefusing(t *testing.T) {
	now := time.Now()
	c := newCache(100 * cacheShards)
	require.True(t, c.Insert(tenantRec("a", "r", "acme", ""), 10))
	c.Revoked("a", 11, now)
	got := c.Get("a")
	require.NotNil(t, got, "a revoked key stays cached, refusing")
	assert.Equal(t, statusRevoked, got.status)
	assert.Equal(t, 1, c.Len(), "replaced, not added")
	// A lookup that read the feed before the revocation is refused: it would
	// bring the key back active.
	assert.False(t, c.Insert(tenantRec("a", "r", "acme", ""), 10))
	assert.Equal(t, statusRevoked, c.Get("a").status)
	// A NOT_FOUND answer is dropped, and an id not cached stays so: the feed
	// entry brings no record to cache.
	require.True(t, c.Insert(&cachedKey{keyID: "b", status: statusNotFound}, 10))
	c.Revoked("b", 12, now)
	assert.Nil(t, c.Get("b"))
	c.Revoked("c", 13, now)
	assert.Nil(t, c.Get("c"))
	assert.False(t, c.Insert(rec("c", "r"), 12), "older than the revocation")
	assert.True(t, c.Insert(rec("c", "r"), 13))
	// A lookup that reflects the revocation replaces the form, and a role
	// change drops it as it drops any key of the role.
	revokedLookup := tenantRec("a", "r", "acme", "")
	revokedLookup.status = statusRevoked
	require.True(t, c.Insert(revokedLookup, 11))
	assert.Same(t, revokedLookup, c.Get("a"))
	c.Revoked("a", 14, now)
	c.EvictRole("r", 15, now)
	assert.Nil(t, c.Get("a"))
}

// Revoked keys are final: the background refresh leaves them out, and they
// are dropped once max-age no longer lets the cache answer for them.
func TestRevokedKeysAreNotRefreshedButDroppedAtMaxAge(t *testing.T) {
	now := time.Now()
	c := newCache(100 * cacheShards) // room for every key whatever its shard
	for _, id := range []string{"live", "gone", "fresh"} {
		r := rec(id, "r")
		r.loaded = now.Add(-time.Hour).UnixNano()
		if id == "fresh" {
			r.loaded = now.UnixNano()
		}
		require.True(t, c.Insert(r, 1))
	}
	c.Revoked("gone", 2, now)
	c.Revoked("fresh", 3, now)
	ids, dropped := c.sweep(now.Add(-time.Minute).UnixNano(), now.Add(-time.Minute).UnixNano())
	assert.Equal(t, []string{"live"}, ids)
	assert.Equal(t, 1, dropped)
	assert.Nil(t, c.Get("gone"))
	assert.NotNil(t, c.Get("live"), "an active key waits for its refresh")
	assert.NotNil(t, c.Get("fresh"), "a revoked key young enough to answer stays")
}
