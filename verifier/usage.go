package verifier

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

const usageShards = 16

// reporter aggregates key use in memory and writes it to the plugin's `usage`
// path in batches: never one Vault write per request. It holds at most limit
// keys between flushes; when full it flushes early and, until then, drops
// (and counts) use of keys it does not already hold.
type reporter struct {
	send    func(context.Context, []wire.Usage) error
	limit   int64
	size    atomic.Int64
	shards  [usageShards]usageShard
	full    chan struct{}
	log     hclog.Logger
	dropped func()
	timeout time.Duration
}

type usageShard struct {
	mu sync.RWMutex
	m  map[string]*usageCell
}

// usageCell counts one key's use with atomics, so that concurrent uses of one
// key do not serialise. Cells are read and updated under the shard's read lock
// and deleted under its write lock, so no count is lost to a deletion.
type usageCell struct {
	count atomic.Uint64
	at    atomic.Int64 // unix nanoseconds, advanced at most once per millisecond
	mu    sync.Mutex   // guards from
	from  netip.Addr
}

func (c *usageCell) record(n uint64, at int64, from netip.Addr) {
	c.count.Add(n)
	old := c.at.Load()
	if at > old+int64(time.Millisecond) && c.at.CompareAndSwap(old, at) {
		c.mu.Lock()
		c.from = from
		c.mu.Unlock()
	}
}

func newReporter(send func(context.Context, []wire.Usage) error, limit int, log hclog.Logger, dropped func(), timeout time.Duration) *reporter {
	r := &reporter{send: send, limit: int64(limit), full: make(chan struct{}, 1), log: log, dropped: dropped, timeout: timeout}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*usageCell)
	}
	return r
}

// Record counts one use of keyID. It does not allocate once keyID is held.
func (r *reporter) Record(keyID string, from netip.Addr, at int64) {
	r.add(keyID, 1, at, from)
}

func (r *reporter) add(keyID string, n uint64, at int64, from netip.Addr) {
	h := uint32(2166136261)
	for i := 0; i < len(keyID); i++ {
		h = (h ^ uint32(keyID[i])) * 16777619
	}
	s := &r.shards[h%usageShards]
	s.mu.RLock()
	if c := s.m[keyID]; c != nil {
		c.record(n, at, from)
		s.mu.RUnlock()
		return
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.m[keyID]
	if c == nil {
		if r.size.Load() >= r.limit {
			r.dropped()
			select {
			case r.full <- struct{}{}:
			default:
			}
			return
		}
		c = &usageCell{}
		s.m[keyID] = c
		r.size.Add(1)
	}
	c.record(n, at, from)
}

// Run flushes every interval, early when full, and once more when ctx is done.
func (r *reporter) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), r.timeout)
			defer cancel()
			if err := r.Flush(final); err != nil {
				r.log.Warn("final usage report failed: these counts are lost", "error", err)
			}
			return
		case <-t.C:
		case <-r.full:
		}
		err := r.Flush(ctx)
		switch {
		case err != nil && !failing:
			r.log.Warn("usage report failed: keeping the counts for the next flush", "error", err)
		case err != nil:
			r.log.Debug("usage report still failing", "error", err)
		case failing:
			r.log.Info("usage reports delivered again")
		}
		failing = err != nil
	}
}

// Flush writes everything counted so far. On failure the unsent counts are
// added back (as far as the limit allows) for the next flush.
func (r *reporter) Flush(ctx context.Context) error {
	var all []wire.Usage
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.RLock()
		for id, c := range s.m {
			if n := c.count.Swap(0); n > 0 {
				c.mu.Lock()
				from := c.from
				c.mu.Unlock()
				all = append(all, toUsage(id, n, c.at.Load(), from))
			}
		}
		s.mu.RUnlock()
		// Forget keys with nothing new, so memory follows the keys in use.
		s.mu.Lock()
		for id, c := range s.m {
			if c.count.Load() == 0 {
				delete(s.m, id)
				r.size.Add(-1)
			}
		}
		s.mu.Unlock()
	}
	for len(all) > 0 {
		n := min(len(all), wire.MaxUsageBatch)
		if err := r.send(ctx, all[:n]); err != nil {
			r.restore(all)
			return err
		}
		all = all[n:]
	}
	return nil
}

func toUsage(id string, n uint64, at int64, from netip.Addr) wire.Usage {
	out := wire.Usage{KeyID: id, Count: n, LastUsedAt: time.Unix(0, at).UTC()}
	if from.IsValid() {
		out.LastUsedFrom = from.String()
	}
	return out
}

func (r *reporter) restore(unsent []wire.Usage) {
	for _, u := range unsent {
		from, _ := netip.ParseAddr(u.LastUsedFrom)
		r.add(u.KeyID, u.Count, u.LastUsedAt.UnixNano(), from)
	}
}
