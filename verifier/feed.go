package verifier

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// feed follows the plugin's change feed by long-poll from the last cursor and
// evicts from the cache on every change: a key change drops that key (a
// `created` drops a cached NOT_FOUND), a role change drops every key of the
// role, and a reset drops everything.
type feed struct {
	vault   *vaultAPI
	cache   *cache
	wait    time.Duration
	timeout time.Duration
	log     hclog.Logger
	metrics *metrics
	now     func() time.Time

	cursor  atomic.Uint64
	lastOK  atomic.Int64 // unix nanoseconds of the last successful poll, 0 = never
	failing atomic.Bool

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
func (f *feed) Run(ctx context.Context) {
	wait := time.Duration(0)
	backoff := feedBackoffMin
	for ctx.Err() == nil {
		pollCtx, cancel := context.WithTimeout(ctx, wait+f.timeout)
		ch, err := f.vault.Changes(pollCtx, f.cursor.Load(), wait)
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
		f.apply(ch)
		// Only after the changes are applied: a request that sees the feed as
		// fresh must also see its evictions.
		f.lastOK.Store(f.now().UnixNano())
		f.readyOnce.Do(func() { close(f.ready) })
		if f.failing.Swap(false) {
			f.log.Info("change feed reachable again", "cursor", f.cursor.Load())
		}
		backoff = feedBackoffMin
		wait = f.wait
	}
}

// awaitFirst waits until the first successful poll, at most d.
func (f *feed) awaitFirst(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.ready:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (f *feed) apply(ch wire.Changes) {
	now := f.now()
	cursor := f.cursor.Load()
	if ch.Reset || ch.Head < cursor {
		f.flush(ch.Head, "feed reset: flushing the cache")
		return
	}
	for _, c := range ch.Changes {
		if c.Seq <= cursor {
			continue // already applied
		}
		switch {
		case c.KeyID != "":
			f.cache.EvictKey(c.KeyID, c.Seq, now)
		case c.Role != "":
			f.cache.EvictRole(c.Role, c.Seq, now)
		default: // a change we cannot place: drop everything rather than guess
			f.cache.Flush(c.Seq)
		}
		cursor = c.Seq
		f.cursor.Store(cursor)
		f.metrics.feedChanges.Inc()
		if !c.Time.IsZero() {
			f.metrics.feedLag.Observe(max(0, now.Sub(c.Time).Seconds()))
		}
	}
	if len(ch.Changes) == 0 && ch.Head > cursor {
		// The head moved but nothing was sent: changes were lost to us.
		f.flush(ch.Head, "feed skipped changes: flushing the cache")
	}
}

func (f *feed) flush(head uint64, why string) {
	f.log.Warn(why, "cursor", f.cursor.Load(), "head", head)
	f.cache.Flush(head)
	f.cursor.Store(head)
	f.metrics.feedResets.Inc()
}

// Cursor is the seq of the last change applied.
func (f *feed) Cursor() uint64 { return f.cursor.Load() }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
