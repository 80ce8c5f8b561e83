package verifier

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// loader resolves cache misses. One `lookup` request to Vault may always be in
// flight (the lead slot): a miss that finds it free goes out at once, so an
// idle verifier sends a lone miss without delay. Misses that arrive while it is
// busy queue up, and whoever takes the next slot sends every queued key_id (up
// to wire.MaxBatch) in one request. A second request goes out beside the lead
// (an extra slot, up to MaxInFlight in all) only when a full batch is waiting
// or a miss has waited spillAfter: a slow answer or a background refresh does
// not hold every miss, and under load the queue goes out in few large batches
// rather than in many small ones — Vault's cost is per request far more than
// per key (docs/production.md).
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
	lead    chan struct{} // cap 1
	extra   chan struct{} // cap MaxInFlight-1
	// spill is how long a queued miss waits for the lookups in flight before
	// it may take an extra slot.
	spill time.Duration
	now   func() time.Time
	// batches counts lookup writes and their sizes, for metrics and tests.
	batchSize func(n int)

	queue chan *pending
	low   chan *pending
	flood *flood
}

// spillAfter is how long a miss waits for the lookup ahead of it before a
// second goes out beside it: longer than a lookup under load takes (about a
// millisecond on the bench machine), short beside what a caller would notice.
const spillAfter = 5 * time.Millisecond

// lookupSource is what the loader needs from Vault.
type lookupSource interface {
	Lookup(ctx context.Context, ids []string) (wire.Batch, error)
}

type pending struct {
	keyID string
	done  chan struct{}
	// taken is set when a batch takes p from its queue: from then on its
	// caller only awaits done.
	taken atomic.Bool
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
		lead:      make(chan struct{}, 1),
		extra:     make(chan struct{}, inFlight-1),
		spill:     spillAfter,
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
	// The lead is free: go at once, with whatever else is queued.
	select {
	case l.lead <- struct{}{}:
		l.send(l.lead)
	default:
	}
	if p.taken.Load() {
		return l.await(ctx, p)
	}
	spill := time.NewTimer(l.spill)
	defer spill.Stop()
	spilled := false
	// mayGoBeside says whether what is queued has earned a lookup beside the
	// lead: this caller's miss has waited its spill, or a full batch waits.
	mayGoBeside := func() bool { return spilled || len(l.queue) >= wire.MaxBatch }
	for {
		if p.taken.Load() {
			// p is in a lookup already (another caller's, or one this caller
			// sent for others after its own): only its answer is awaited. Its
			// spill must not send misses that have not waited theirs.
			return l.await(ctx, p)
		}
		var extra chan struct{} // nil (never ready) until p may go beside the lead
		if mayGoBeside() {
			extra = l.extra
		}
		select {
		case <-p.done:
			return p.ans, p.err
		case <-ctx.Done():
			return answer{}, ctx.Err() // p stays queued; whoever takes it caches the answer
		case <-spill.C:
			spilled = true
		case l.lead <- struct{}{}:
			l.send(l.lead)
		case extra <- struct{}{}:
			if p.taken.Load() || !mayGoBeside() {
				// p went out, or the full batch did, while this caller waited
				// for the slot: none of what is queued has earned it.
				<-l.extra
				continue
			}
			l.send(l.extra)
		}
	}
}

// send takes what is queued and looks it up, holding the slot it was given.
// Whether the caller's own miss went out, in this lookup or another caller's,
// its taken flag says.
func (l *loader) send(slot chan struct{}) {
	defer func() { <-slot }()
	if batch := l.take(); len(batch) > 0 {
		l.fetch(batch)
	}
}

// await waits for the lookup that took p, rather than spin on free slots.
func (l *loader) await(ctx context.Context, p *pending) (answer, error) {
	select {
	case <-p.done:
		return p.ans, p.err
	case <-ctx.Done():
		return answer{}, ctx.Err()
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
				p.taken.Store(true)
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
// never delays a request: a hit does not wait for it, a record past max-age is
// answered by a lookup of its own, and it holds an extra slot (the lead only
// when MaxInFlight is 1), so a miss does not queue behind it.
func (l *loader) refresh(ctx context.Context, ids []string) {
	for len(ids) > 0 && ctx.Err() == nil {
		n := min(len(ids), wire.MaxBatch)
		slot := l.extra // beside the lead: a refresh does not hold a miss
		if cap(slot) == 0 {
			slot = l.lead
		}
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
			return
		}
		rctx, cancel := context.WithTimeout(ctx, l.timeout)
		_, err := l.resolve(rctx, ids[:n])
		cancel()
		<-slot
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
