package verifier

import (
	"sync"
	"time"
)

const (
	cacheShards = 64
	// markTTL is how long the eviction of a key, role or tenant is remembered to refuse
	// stale lookups; a lookup older than that is refused by the floor instead.
	markTTL  = 30 * time.Second
	maxMarks = 200_000
	// negativeShare: NOT_FOUND answers take at most 1/negativeShare of the
	// cache size, on top of it.
	negativeShare = 10
)

// cache holds cached keys for the hot path, found by key_id (which the token
// carries): one index, not a second by digest, because a million keys are held.
// A hit proves nothing by itself: cachedKey.decide compares the token's digest
// in constant time. The key_id index answers forged secrets and unknown ids
// without Vault and lets the feed evict.
//
// NOT_FOUND answers are kept apart, in a smaller bound of their own: anyone can
// make unknown ids, and they must never evict a known key (DESIGN §6).
//
// Race protection (DESIGN §6): a lookup entry reflects every change up to its
// Seq. Insert refuses an entry when an eviction with a higher seq has already
// been applied for its key_id, its role, its creator's role, its tenant, or
// everything (a reset), because the entry may predate that change. Evictions
// are remembered for markTTL; after that the floor (the highest forgotten seq)
// refuses any older entry.
type cache struct {
	shards      [cacheShards]cacheShard
	perShard    int
	negPerShard int
	markMu      sync.Mutex // serialises Insert against evictions
	keyMarks    map[string]uint64
	roleMarks   map[string]uint64 // a role's own keys and the keys its holders created
	tenantMarks map[string]uint64
	order       []mark // evictions in the order applied, for forgetting
	floor       uint64
}

type cacheShard struct {
	mu       sync.RWMutex
	byKeyID  map[string]*cachedKey
	negative map[string]*cachedKey // NOT_FOUND answers
}

type mark struct {
	seq               uint64
	key, role, tenant string
	at                time.Time
}

// newCache returns a cache of at most size cached keys.
func newCache(size int) *cache {
	c := &cache{
		perShard:    max(1, size/cacheShards),
		negPerShard: max(1, size/negativeShare/cacheShards),
		keyMarks:    make(map[string]uint64),
		roleMarks:   make(map[string]uint64),
		tenantMarks: make(map[string]uint64),
	}
	for i := range c.shards {
		c.shards[i].byKeyID = make(map[string]*cachedKey)
		c.shards[i].negative = make(map[string]*cachedKey)
	}
	return c
}

func (c *cache) shard(keyID string) *cacheShard {
	h := uint32(2166136261) // FNV-1a, inline: no allocation on the hot path
	for i := 0; i < len(keyID); i++ {
		h = (h ^ uint32(keyID[i])) * 16777619
	}
	return &c.shards[h%cacheShards]
}

// Get returns what is cached for keyID, or nil. The caller must still compare
// the token's digest (cachedKey.decide does).
func (c *cache) Get(keyID string) *cachedKey {
	s := c.shard(keyID)
	s.mu.RLock()
	r := s.byKeyID[keyID]
	if r == nil {
		r = s.negative[keyID]
	}
	s.mu.RUnlock()
	return r
}

// Insert caches r, which reflects the feed up to seq, unless a change applied
// since could make it stale. It reports whether r was cached.
func (c *cache) Insert(r *cachedKey, seq uint64) bool {
	c.markMu.Lock()
	defer c.markMu.Unlock()
	if c.floor > seq || c.keyMarks[r.keyID] > seq || c.marked(c.roleMarks, r.role(), seq) ||
		c.marked(c.roleMarks, r.creatorRole(), seq) || c.marked(c.tenantMarks, r.tenantName(), seq) {
		return false
	}
	s := c.shard(r.keyID)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop(r.keyID)
	m, limit := s.byKeyID, c.perShard
	if r.status == statusNotFound {
		m, limit = s.negative, c.negPerShard
	}
	if len(m) >= limit {
		for _, victim := range m { // any one: map order is random
			s.remove(victim)
			break
		}
	}
	m[r.keyID] = r
	return true
}

// marked reports whether name ("" names nothing) has an eviction after seq.
// Caller holds markMu.
func (c *cache) marked(marks map[string]uint64, name string, seq uint64) bool {
	return name != "" && marks[name] > seq
}

// drop removes whatever is cached for keyID. Caller holds s.mu.
func (s *cacheShard) drop(keyID string) {
	if r := s.byKeyID[keyID]; r != nil {
		s.remove(r)
	}
	delete(s.negative, keyID)
}

func (s *cacheShard) remove(r *cachedKey) {
	if r.status == statusNotFound {
		delete(s.negative, r.keyID)
		return
	}
	delete(s.byKeyID, r.keyID)
}

// EvictKey drops keyID's cached key and refuses entries older than seq for it.
func (c *cache) EvictKey(keyID string, seq uint64, now time.Time) {
	c.markKey(keyID, seq, now, (*cacheShard).drop)
}

// Created applies a key's first change, its creation at seq: entries older
// than seq are refused as by EvictKey, but only a NOT_FOUND answer (the id was
// asked for before it was issued) is dropped. A found record was read after
// the key was written, and nothing else has changed it before this change, so
// it stays: a key used at once keeps its first cached verdict however late its
// creation comes through the feed.
func (c *cache) Created(keyID string, seq uint64, now time.Time) {
	c.markKey(keyID, seq, now, func(s *cacheShard, keyID string) { delete(s.negative, keyID) })
}

// Revoked applies a key's revocation at seq: entries older than seq are
// refused as by EvictKey, and a found key cached here is not dropped but
// replaced by its revoked form (cachedKey.revoked), so the next check answers
// REVOKED without waiting for a lookup. A revocation is final: no later change
// makes the key valid again, so the feed entry alone says all a lookup would.
func (c *cache) Revoked(keyID string, seq uint64, now time.Time) {
	c.markKey(keyID, seq, now, func(s *cacheShard, keyID string) {
		r := s.byKeyID[keyID]
		s.drop(keyID)
		if r != nil {
			s.byKeyID[keyID] = r.revoked()
		}
	})
}

// markKey refuses entries older than seq for keyID and applies drop to its shard.
func (c *cache) markKey(keyID string, seq uint64, now time.Time, drop func(*cacheShard, string)) {
	c.markMu.Lock()
	defer c.markMu.Unlock()
	if c.keyMarks[keyID] < seq {
		c.keyMarks[keyID] = seq
	}
	c.order = append(c.order, mark{seq: seq, key: keyID, at: now})
	s := c.shard(keyID)
	s.mu.Lock()
	drop(s, keyID)
	s.mu.Unlock()
	c.forget(now)
}

// EvictRole drops every cached key of role, and every key whose creator holds
// role (its permissions are capped by that role: the creator ceiling, DESIGN
// §4), and refuses entries older than seq for either.
func (c *cache) EvictRole(role string, seq uint64, now time.Time) {
	c.evictWhere(c.roleMarks, role, mark{seq: seq, role: role, at: now}, func(r *cachedKey) bool {
		return r.role() == role || r.creatorRole() == role
	})
}

// EvictTenant drops every cached key of tenant (its tenant-wide list or one
// of its named allow-lists changed, or it was deleted) and refuses entries
// older than seq for it.
func (c *cache) EvictTenant(tenant string, seq uint64, now time.Time) {
	c.evictWhere(c.tenantMarks, tenant, mark{seq: seq, tenant: tenant, at: now}, func(r *cachedKey) bool {
		return r.tenantName() == tenant
	})
}

// evictWhere marks name in marks at m.seq and drops every cached key that
// hit selects: the one discipline of every eviction naming many keys.
func (c *cache) evictWhere(marks map[string]uint64, name string, m mark, hit func(*cachedKey) bool) {
	c.markMu.Lock()
	defer c.markMu.Unlock()
	if marks[name] < m.seq {
		marks[name] = m.seq
	}
	c.order = append(c.order, m)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, r := range s.byKeyID {
			if hit(r) {
				s.remove(r)
			}
		}
		s.mu.Unlock()
	}
	c.forget(m.at)
}

// Flush drops everything and refuses entries older than seq: the feed was reset
// and changes before seq may have been missed.
func (c *cache) Flush(seq uint64) {
	c.markMu.Lock()
	defer c.markMu.Unlock()
	c.floor = seq // may go down: a reset to a lower head is a new feed
	clear(c.keyMarks)
	clear(c.roleMarks)
	clear(c.tenantMarks)
	c.order = nil
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		clear(s.byKeyID)
		clear(s.negative)
		s.mu.Unlock()
	}
}

// forget drops marks older than markTTL (or beyond maxMarks), raising the floor
// to their seq. Caller holds markMu.
func (c *cache) forget(now time.Time) {
	n := 0
	for n < len(c.order) && (now.Sub(c.order[n].at) > markTTL || len(c.order)-n > maxMarks) {
		m := c.order[n]
		c.floor = max(c.floor, m.seq)
		if m.key != "" && c.keyMarks[m.key] <= m.seq {
			delete(c.keyMarks, m.key)
		}
		if m.role != "" && c.roleMarks[m.role] <= m.seq {
			delete(c.roleMarks, m.role)
		}
		if m.tenant != "" && c.tenantMarks[m.tenant] <= m.seq {
			delete(c.tenantMarks, m.tenant)
		}
		n++
	}
	if n > 0 {
		c.order = c.order[n:]
	}
}

// Len is the number of keys cached.
func (c *cache) Len() int { return c.count(func(s *cacheShard) int { return len(s.byKeyID) }) }

// NegativeLen is the number of NOT_FOUND answers cached.
func (c *cache) NegativeLen() int { return c.count(func(s *cacheShard) int { return len(s.negative) }) }

// count sums size over the shards, each read under its lock.
func (c *cache) count(size func(*cacheShard) int) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += size(s)
		s.mu.RUnlock()
	}
	return n
}

// sweep is the background refresh's one pass over the cache. It returns the
// key_ids of known keys loaded before refreshBefore (unix nanoseconds): the
// ones to look up again. NOT_FOUND answers are not refreshed; past max-age
// they are simply looked up again. Nor are revoked keys: a revocation is
// final, there is nothing to refresh, so a revoked key loaded before
// dropBefore (which max-age no longer lets the cache answer for) is dropped
// instead, and counted in dropped. Each shard is read under its read lock and
// takes its write lock only to drop what it found.
func (c *cache) sweep(refreshBefore, dropBefore int64) (ids []string, dropped int) {
	var stale []*cachedKey
	for i := range c.shards {
		s := &c.shards[i]
		stale = stale[:0]
		s.mu.RLock()
		for id, r := range s.byKeyID {
			switch {
			case r.status == statusRevoked && r.loaded < dropBefore:
				stale = append(stale, r)
			case r.status != statusRevoked && r.loaded < refreshBefore:
				ids = append(ids, id)
			}
		}
		s.mu.RUnlock()
		if len(stale) == 0 {
			continue
		}
		s.mu.Lock()
		for _, r := range stale {
			if s.byKeyID[r.keyID] == r { // not replaced since it was read
				s.remove(r)
				dropped++
			}
		}
		s.mu.Unlock()
	}
	return ids, dropped
}
