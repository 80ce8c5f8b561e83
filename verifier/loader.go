package verifier

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// loader resolves cache misses. At most cap(slots) requests to Vault are in
// flight; misses that arrive while the slots are busy queue up, and whoever
// takes the next slot sends every queued key_id (up to wire.MaxBatch) in one
// `lookup` write. An idle verifier therefore sends a lone miss at once, and a
// busy one batches.
//
// Misses from sources that keep presenting unknown keys (see flood) go to a
// second, small queue instead: a batch takes them only after every other
// queued miss, and when that queue is full they fail at once rather than wait.
// Random tokens with valid checksums thus cannot starve real cold keys.
type loader struct {
	vault   lookupSource
	keys    *keyring
	cache   *cache
	log     hclog.Logger
	timeout time.Duration
	slots   chan struct{}
	now     func() time.Time
	// batches counts lookup writes and their sizes, for metrics and tests.
	batchSize func(n int)

	queue chan *pending
	low   chan *pending
	flood *flood
}

// lookupSource is what the loader needs from Vault.
type lookupSource interface {
	Lookup(ctx context.Context, ids []string) (wire.Batch, error)
}

type pending struct {
	keyID string
	done  chan struct{}
	ans   answer
	err   error
}

// answer is one key's lookup answer: the prepared key and the feed head it
// was read at (wire.Entry.Seq). The seq is kept beside the cached key, not in
// it: only the miss that asked needs it, and the cached key stays 128 bytes.
type answer struct {
	rec *cachedKey
	seq uint64
}

func newLoader(v lookupSource, k *keyring, c *cache, log hclog.Logger, timeout time.Duration, inFlight int, batchSize func(int)) *loader {
	return &loader{
		vault: v, keys: k, cache: c, log: log, timeout: timeout,
		slots:     make(chan struct{}, inFlight),
		queue:     make(chan *pending, 64*wire.MaxBatch),
		low:       make(chan *pending, lowQueue),
		flood:     newFlood(time.Now),
		now:       time.Now,
		batchSize: batchSize,
	}
}

// load returns the cached key for keyID, caching it when no change raced the lookup.
// It is returned even when it was not cached: it was true when read.
// A low miss (from a suspected flood) waits in the small low queue, or fails
// at once when that is full.
func (l *loader) load(ctx context.Context, keyID string, low bool) (answer, error) {
	p := &pending{keyID: keyID, done: make(chan struct{})}
	if low {
		select {
		case l.low <- p:
		default:
			return answer{}, errFlooded
		}
	} else {
		select {
		case l.queue <- p:
		case <-ctx.Done():
			return answer{}, ctx.Err()
		}
	}
	for {
		select {
		case <-p.done:
			return p.ans, p.err
		default:
		}
		select {
		case <-p.done:
			return p.ans, p.err
		case <-ctx.Done():
			return answer{}, ctx.Err() // p stays queued; whoever takes it caches the answer
		case l.slots <- struct{}{}:
			batch := l.take()
			if len(batch) > 0 {
				l.fetch(batch)
			}
			<-l.slots
			if len(batch) == 0 {
				// The queue was empty, so p is in a batch another caller is
				// fetching: wait for it rather than spin on free slots.
				select {
				case <-p.done:
					return p.ans, p.err
				case <-ctx.Done():
					return answer{}, ctx.Err()
				}
			}
		}
	}
}

// take drains up to wire.MaxBatch distinct key_ids from the queue, then fills
// what room is left from the low queue.
func (l *loader) take() map[string][]*pending {
	batch := make(map[string][]*pending)
	for _, q := range [...]chan *pending{l.queue, l.low} {
	fill:
		for len(batch) < wire.MaxBatch {
			select {
			case p := <-q:
				batch[p.keyID] = append(batch[p.keyID], p)
			default:
				break fill
			}
		}
	}
	return batch
}

// refresh looks ids up again in the background (records nearing -max-age), a
// batch at a time, within the same bound on requests in flight as misses. It
// never delays a request: a hit does not wait for it, and a record past
// max-age is answered by a lookup of its own.
func (l *loader) refresh(ctx context.Context, ids []string) {
	for len(ids) > 0 && ctx.Err() == nil {
		n := min(len(ids), wire.MaxBatch)
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		rctx, cancel := context.WithTimeout(ctx, l.timeout)
		_, err := l.resolve(rctx, ids[:n])
		cancel()
		<-l.slots
		if err != nil {
			l.log.Debug("background refresh failed: records past max-age will be looked up", "keys", n, "error", err)
			return
		}
		ids = ids[n:]
	}
}

// fetch looks up a batch, unwraps its data keys in one transit call, caches
// what it may, and wakes every waiter.
func (l *loader) fetch(batch map[string][]*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	l.batchSize(len(ids))
	recs, err := l.resolve(ctx, ids)
	for i, id := range ids {
		for _, p := range batch[id] {
			if err != nil {
				p.err = err
			} else if recs[i].err != nil {
				p.err = recs[i].err
			} else {
				p.ans = recs[i].ans
			}
			close(p.done)
		}
	}
}

type resolved struct {
	ans answer
	err error
}

func (l *loader) resolve(ctx context.Context, ids []string) ([]resolved, error) {
	b, err := l.vault.Lookup(ctx, ids)
	if err != nil {
		return nil, err
	}
	var wrapped []string
	for i := range b.Entries {
		if s := b.Entries[i].Sealed; s != nil {
			wrapped = append(wrapped, s.WrappedDEK)
		}
	}
	var deks map[string][]byte
	if len(wrapped) > 0 {
		if deks, err = l.keys.Unwrap(ctx, wrapped); err != nil {
			return nil, err
		}
	}
	out := make([]resolved, len(ids))
	loaded := l.now().UnixNano()
	for i, e := range b.Entries {
		var dek []byte
		if e.Sealed != nil {
			dek = deks[e.Sealed.WrappedDEK]
		}
		rec, err := newCachedKey(e, dek)
		if err != nil {
			l.log.Error("cannot use lookup answer", "key_id", e.KeyID, "error", err)
			out[i].err = fmt.Errorf("%w: %v", ErrUnavailable, err)
			continue
		}
		rec.loaded = loaded
		out[i].ans = answer{rec: rec, seq: e.Seq}
		if !l.cache.Insert(rec, e.Seq) {
			l.log.Debug("lookup raced a change: answer not cached", "key_id", e.KeyID, "seq", e.Seq)
		}
	}
	return out, nil
}
