package verifier

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// follower follows the plugin's change feed by long-poll from the last cursor and
// evicts from the cache on every change: a key change drops that key (a
// `created` drops only a cached NOT_FOUND; a `revoked`, being final, leaves
// the key cached in its revoked form), a role change drops every key of the
// role and every key its holders created, a tenant or allow-list change
// (naming a tenant and no key) drops every key of the tenant, and a reset, a
// seq gap or a change naming nothing drops everything.
//
// Freshness (DESIGN §6): heard is the newest head Vault has answered. While it
// is beyond the cursor (after a restart of the poll loop, an outage, a pause,
// or simply a backlog longer than one page) the verifier is behind: changes it
// knows exist are not applied yet, so it answers by lookup instead of from the
// cache until it has applied up to that head.
type follower struct {
	vault   *vaultAPI
	cache   *cache
	wait    time.Duration
	timeout time.Duration
	log     hclog.Logger
	metrics *metrics
	now     func() time.Time

	cursor atomic.Uint64 // seq of the last change applied
	// cursorID is the id of that change ("" when unknown: after a start or a
	// reset at a head whose entry was not in the answer). Sent as after_id, so
	// the plugin can tell a recreated or restored mount (DESIGN §4). Only Run
	// touches it.
	cursorID string
	heard    atomic.Uint64 // the newest head Vault answered
	lastOK   atomic.Int64  // unix nanoseconds of the last successful poll, 0 = never
	failing  atomic.Bool

	// ready is closed after the first successful poll, so requests that arrive
	// while a fresh verifier makes its first contact wait for it instead of
	// failing at once.
	ready     chan struct{}
	readyOnce sync.Once
}

const (
	feedBackoffMin = 50 * time.Millisecond
	feedBackoffMax = time.Second
)

// Run polls until ctx is done. The first poll does not wait, so a fresh
// verifier is ready as soon as Vault answers.
func (f *follower) Run(ctx context.Context) {
	wait := time.Duration(0)
	backoff := feedBackoffMin
	for ctx.Err() == nil {
		pollCtx, cancel := context.WithTimeout(ctx, wait+f.timeout)
		ch, err := f.vault.Changes(pollCtx, f.cursor.Load(), f.cursorID, wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !f.failing.Swap(true) {
				f.log.Warn("change feed unreachable: serving cached verdicts until stale-if-error runs out", "error", err)
			} else {
				f.log.Debug("change feed still unreachable", "error", err)
			}
			sleep(ctx, backoff)
			backoff = min(2*backoff, feedBackoffMax)
			continue
		}
		if f.lastOK.Load() == 0 {
			f.start(ch)
		} else {
			f.apply(ch)
		}
		// Only after the changes are applied: a request that sees the feed as
		// fresh must also see its evictions.
		f.lastOK.Store(f.now().UnixNano())
		f.readyOnce.Do(func() { close(f.ready) })
		if f.failing.Swap(false) {
			f.log.Info("change feed reachable again", "cursor", f.cursor.Load(), "head", ch.Head)
		}
		backoff = feedBackoffMin
		wait = f.wait
		if f.behind() {
			wait = 0 // a backlog: read the next page at once
		}
	}
}

// behind reports whether Vault has answered a head this verifier has not
// applied yet: cached verdicts cannot be vouched for then.
func (f *follower) behind() bool {
	return f.heard.Load() > f.cursor.Load()
}

// awaitFirst waits until the first successful poll, at most d.
func (f *follower) awaitFirst(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ready:
	case <-t.C:
	case <-ctx.Done():
	}
}

// start positions a fresh verifier at the head. Nothing is cached yet, so the
// retained history has nothing to evict: replaying it would only delay the
// first answers.
func (f *follower) start(ch wire.Changes) {
	f.moveTo(ch)
	f.log.Debug("following the change feed", "head", ch.Head)
}

func (f *follower) apply(ch wire.Changes) {
	now := f.now()
	cursor := f.cursor.Load()
	if ch.Reset || ch.Head < cursor {
		f.flush(ch, "feed reset: flushing the cache")
		return
	}
	// Before the changes are applied: from here until the cursor reaches the
	// head, requests answer by lookup.
	f.heard.Store(ch.Head)
	for _, c := range ch.Changes {
		if c.Seq <= cursor {
			continue // already applied
		}
		if c.Seq != cursor+1 {
			// Seqs are consecutive: entries between were lost to us.
			f.flush(ch, "feed skipped changes: flushing the cache")
			return
		}
		switch {
		case c.KeyID != "" && c.Op == wire.OpCreated:
			f.cache.Created(c.KeyID, c.Seq, now)
		case c.KeyID != "" && c.Op == wire.OpRevoked:
			f.cache.Revoked(c.KeyID, c.Seq, now)
		case c.KeyID != "":
			f.cache.EvictKey(c.KeyID, c.Seq, now)
		case c.Role != "" || c.Tenant != "":
			// A role change names no tenant and a tenant change no role;
			// one naming both drops both.
			if c.Role != "" {
				f.cache.EvictRole(c.Role, c.Seq, now)
			}
			if c.Tenant != "" {
				f.cache.EvictTenant(c.Tenant, c.Seq, now)
			}
		default: // a change we cannot place: drop everything rather than guess
			f.cache.Flush(c.Seq)
		}
		cursor = c.Seq
		f.cursorID = c.ID
		f.cursor.Store(cursor)
		f.metrics.feedChanges.Inc()
		if !c.Time.IsZero() && c.Op != wire.OpCreated {
			// A creation evicts nothing and may be held (hold_created): the
			// lag measured is that of the changes that evict.
			f.metrics.feedLag.Observe(max(0, now.Sub(c.Time).Seconds()))
		}
	}
	if len(ch.Changes) == 0 && ch.Head > cursor {
		// The head moved but nothing was sent: changes were lost to us.
		f.flush(ch, "feed skipped changes: flushing the cache")
	}
}

// flush drops every cached verdict (none can be vouched for) and continues
// from the head of ch.
func (f *follower) flush(ch wire.Changes, why string) {
	f.log.Warn(why, "cursor", f.cursor.Load(), "head", ch.Head)
	f.cache.Flush(ch.Head)
	f.moveTo(ch)
	f.metrics.feedResets.Inc()
}

// moveTo sets the cursor to the head of ch, taking the head entry's id when ch
// carries it.
func (f *follower) moveTo(ch wire.Changes) {
	f.cursorID = ""
	if n := len(ch.Changes); n > 0 && ch.Changes[n-1].Seq == ch.Head {
		f.cursorID = ch.Changes[n-1].ID
	}
	f.cursor.Store(ch.Head)
	f.heard.Store(ch.Head)
}

// Cursor is the seq of the last change applied.
func (f *follower) Cursor() uint64 { return f.cursor.Load() }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
