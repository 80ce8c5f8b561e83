package verifier

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

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
