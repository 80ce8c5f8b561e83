package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

const (
	storageFeedPrefix = "feed/"
	storageFeedMeta   = "feed-meta"
	// feedRecent is how many newest entries stay in memory for followers.
	feedRecent = 4096
	// feedPage is the most entries one `changes` answer carries.
	feedPage = 1000
	// feedCheckpointEvery bounds how far Load must probe forward after a restart.
	feedCheckpointEvery = 256
	// feedPurgeBatch is how many entries Purge reads and deletes between two
	// takes of the feed lock, so appends and polls are never held up for long.
	feedPurgeBatch = 100
)

// feedMeta is the persisted position of the feed. Head is a checkpoint: entries
// after it may exist and are found by probing forward on Load.
type feedMeta struct {
	Tail uint64 `json:"tail"` // oldest retained seq (1 while nothing was purged)
	Head uint64 `json:"head"`
}

// Feed is the ordered change log verifiers follow. Appends store their
// entries concurrently, but the head only moves over stored entries, in order:
// a sequence number is never visible before every smaller one is stored, and
// an append returns only once its own entry is visible.
type Feed struct {
	mu      sync.Mutex
	head    uint64
	tail    uint64
	written uint64 // head at the last checkpoint
	recent  []wire.Change
	changed chan struct{} // closed and replaced on every append
	loaded  bool

	// Appends in flight. next is the newest seq handed out; stored holds the
	// entries stored above the head (each waits for every smaller seq);
	// inflight holds every append not yet returned. After a failed store the
	// feed drains: no seq is handed out until every append in flight has
	// returned, so no late store can land on a seq handed out again.
	next     uint64
	stored   map[uint64]wire.Change
	inflight map[uint64]*feedTicket
	draining bool
	moved    *sync.Cond // on mu: the head moved, an append failed, or the drain ended
	// published mirrors head once loaded, so lookups read it without waiting
	// for an append's storage write to finish.
	published atomic.Uint64
	ready     atomic.Bool
	// holding, when set (tests, before any request), is called with the hold
	// each time HoldCreated starts to wait.
	holding func(time.Duration)
}

// NewFeed returns an empty, unloaded feed.
func NewFeed() *Feed {
	f := &Feed{tail: 1, changed: make(chan struct{}), stored: map[uint64]wire.Change{}, inflight: map[uint64]*feedTicket{}}
	f.moved = sync.NewCond(&f.mu)
	return f
}

// feedTicket is one append in flight; failed is set (under the feed lock)
// when a smaller seq failed to store, so this one is never published.
type feedTicket struct{ failed bool }

// errFeedDrained is the error of an append whose entry was stored but can never
// be published, because a smaller seq failed to store. The change stays marked
// unpublished and is published again by its retry or the repair pass.
var errFeedDrained = errors.New("append to change feed: an earlier entry failed to store; retry")

func feedKey(seq uint64) string { return fmt.Sprintf("%s%020d", storageFeedPrefix, seq) }

// Load restores the feed position from storage: the checkpoint, then forward
// until the first missing entry.
func (f *Feed) Load(ctx context.Context, s logical.Storage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loadLocked(ctx, s)
}

func (f *Feed) loadLocked(ctx context.Context, s logical.Storage) error {
	if f.loaded {
		return nil
	}
	var meta feedMeta
	entry, err := s.Get(ctx, storageFeedMeta)
	if err != nil {
		return fmt.Errorf("load feed position: %w", err)
	}
	if entry != nil {
		if err := entry.DecodeJSON(&meta); err != nil {
			return fmt.Errorf("decode feed position: %w", err)
		}
	}
	head := meta.Head
	if head+1 < meta.Tail {
		head = meta.Tail - 1
	}
	for {
		e, err := s.Get(ctx, feedKey(head+1))
		if err != nil {
			return fmt.Errorf("probe feed: %w", err)
		}
		if e == nil {
			break
		}
		head++
	}
	f.head, f.written, f.tail = head, meta.Head, max(meta.Tail, 1)
	f.recent = f.recent[:0]
	f.loaded = true
	f.published.Store(head)
	f.ready.Store(true)
	return nil
}

// Head is the newest sequence number.
func (f *Feed) Head(ctx context.Context, s logical.Storage) (uint64, error) {
	if f.ready.Load() {
		return f.published.Load(), nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.loadLocked(ctx, s); err != nil {
		return 0, err
	}
	return f.head, nil
}

// Append publishes one change (ch names what changed; its Seq, ID and Time
// are set here) after the change was written, and wakes waiters.
func (f *Feed) Append(ctx context.Context, s logical.Storage, ch wire.Change, now time.Time) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.draining {
		f.moved.Wait()
	}
	if err := f.loadLocked(ctx, s); err != nil {
		return 0, err
	}
	id, err := newChangeID()
	if err != nil {
		return 0, err
	}
	f.next = max(f.next, f.head) + 1
	ch.Seq, ch.ID, ch.Time = f.next, id, now
	t := &feedTicket{}
	f.inflight[ch.Seq] = t
	defer f.leaveLocked(ch.Seq)
	entry, err := logical.StorageEntryJSON(feedKey(ch.Seq), ch)
	if err == nil {
		// The one store of the append runs without the lock: appends overlap.
		f.mu.Unlock()
		err = s.Put(ctx, entry)
		f.mu.Lock()
	}
	if t.failed {
		return 0, errFeedDrained
	}
	if err != nil {
		f.failLocked(ch.Seq)
		return 0, fmt.Errorf("append to change feed: %w", err)
	}
	f.stored[ch.Seq] = ch
	if err := f.publishLocked(ctx, s); err != nil {
		return 0, err
	}
	for f.head < ch.Seq && !t.failed {
		f.moved.Wait()
	}
	if t.failed {
		return 0, errFeedDrained
	}
	return ch.Seq, nil
}

// publishLocked moves the head over the stored entries that follow it, then
// wakes appenders and followers.
func (f *Feed) publishLocked(ctx context.Context, s logical.Storage) error {
	from := f.head
	for {
		ch, ok := f.stored[f.head+1]
		if !ok {
			break
		}
		delete(f.stored, ch.Seq)
		f.head = ch.Seq
		f.recent = append(f.recent, ch)
		if len(f.recent) > feedRecent {
			f.recent = append(f.recent[:0], f.recent[len(f.recent)-feedRecent/2:]...)
		}
	}
	if f.head == from {
		return nil
	}
	f.published.Store(f.head)
	close(f.changed)
	f.changed = make(chan struct{})
	f.moved.Broadcast()
	if f.head-f.written >= feedCheckpointEvery {
		return f.saveMetaLocked(ctx, s)
	}
	return nil
}

// failLocked handles a failed store of seq: every later seq in flight fails
// too (it can never be published without seq, so the head stops below it),
// and the feed drains.
func (f *Feed) failLocked(seq uint64) {
	for later, t := range f.inflight {
		if later > seq {
			t.failed = true
		}
	}
	f.draining = true
	f.moved.Broadcast()
}

// leaveLocked ends the append of seq; the last one out of a drain hands out
// seqs again from the head (entries stored above it are overwritten).
func (f *Feed) leaveLocked(seq uint64) {
	delete(f.inflight, seq)
	if f.draining && len(f.inflight) == 0 {
		f.next = f.head
		clear(f.stored)
		f.draining = false
		f.moved.Broadcast()
	}
}

func (f *Feed) saveMetaLocked(ctx context.Context, s logical.Storage) error {
	entry, err := logical.StorageEntryJSON(storageFeedMeta, feedMeta{Tail: f.tail, Head: f.head})
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("store feed position: %w", err)
	}
	f.written = f.head
	return nil
}

// Wait blocks until the head passes after, the wait ends, or ctx is done.
func (f *Feed) Wait(ctx context.Context, after uint64, wait time.Duration) {
	if wait <= 0 {
		return
	}
	f.mu.Lock()
	if f.head > after || !f.loaded {
		f.mu.Unlock()
		return
	}
	ch := f.changed
	f.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
	case <-ctx.Done():
	}
}

// HoldCreated waits while every change after `after` announces a new key (op
// created): until a change of any other kind is published, a full page of
// new keys is waiting, d passes, or ctx is done. It reports whether it
// waited and the page is worth reading again (not when ctx ended the wait).
//
// A new key is in no verifier's cache, so its entry evicts nothing: a
// follower loses nothing when it comes a little later together with the
// next ones, and under an issuance load it polls once per hold instead of
// once per round trip. Every other change (a revocation, a disable, a role
// narrowing) ends the hold as soon as it is published. Changes not in the
// recent window (a backlog read from storage) are never held.
func (f *Feed) HoldCreated(ctx context.Context, after uint64, d time.Duration) bool {
	if d <= 0 {
		return false
	}
	var timer *time.Timer
	checked := after // the changes up to checked are new keys
	for {
		f.mu.Lock()
		hold := f.onlyCreatedLocked(after, &checked)
		ch := f.changed
		f.mu.Unlock()
		if !hold {
			return timer != nil
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		if f.holding != nil {
			f.holding(d)
		}
		select {
		case <-ch:
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// onlyCreatedLocked reports whether the changes after `after` are at least
// one, fewer than a page, all in the recent window, and every one a new key.
// Those up to *checked were found to be new keys by an earlier call: only the
// rest is scanned, and *checked moves to the head, so each wake of a hold
// costs the changes published since the last one, under the lock appends take.
func (f *Feed) onlyCreatedLocked(after uint64, checked *uint64) bool {
	n := len(f.recent)
	if n == 0 || after >= f.head || f.recent[0].Seq > after+1 || f.head-after >= feedPage {
		return false
	}
	for _, c := range f.recent[*checked+1-f.recent[0].Seq:] {
		if c.Op != wire.OpCreated {
			return false
		}
	}
	*checked = f.head
	return true
}

// newChangeID is the random id of one feed entry (16 hex characters).
func newChangeID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("feed entry id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Since returns up to feedPage changes after `after`. Reset is true when the
// follower cannot go on from after: it is older than the retained tail, ahead
// of the head, the entry at after is not afterID (another history: the mount
// was recreated or storage restored; empty afterID skips this check), or an
// entry in between is gone (purged while we read). On reset the follower
// flushes and continues from Head.
func (f *Feed) Since(ctx context.Context, s logical.Storage, after uint64, afterID string) (wire.Changes, error) {
	f.mu.Lock()
	if err := f.loadLocked(ctx, s); err != nil {
		f.mu.Unlock()
		return wire.Changes{}, err
	}
	head, tail := f.head, f.tail
	out := wire.Changes{Head: head, Changes: []wire.Change{}}
	if after+1 < tail || after > head {
		// The page from the tail comes along; the follower flushes either way.
		out.Reset = true
		after, afterID = min(tail-1, head), ""
	}
	// The entry at after (to check its id) and the page after it, from memory
	// when they are recent enough.
	need := after
	if afterID == "" || after == 0 {
		need = after + 1
	}
	if n := len(f.recent); n > 0 && f.recent[0].Seq <= need {
		start := int(need - f.recent[0].Seq)
		if need == after {
			if f.recent[start].ID != afterID {
				f.mu.Unlock()
				out.Reset = true
				return out, nil
			}
			start++
		}
		if start < n {
			out.Changes = append(out.Changes, f.recent[start:min(n, start+feedPage)]...)
		}
		f.mu.Unlock()
		return out, nil
	}
	f.mu.Unlock()
	for seq := need; seq <= head && len(out.Changes) < feedPage; seq++ {
		entry, err := s.Get(ctx, feedKey(seq))
		if err != nil {
			return wire.Changes{}, fmt.Errorf("read change %d: %w", seq, err)
		}
		if entry == nil {
			// Purged while we read (or lost): never skip silently, the follower
			// would miss a revocation.
			return wire.Changes{Head: head, Changes: []wire.Change{}, Reset: true}, nil
		}
		var ch wire.Change
		if err := entry.DecodeJSON(&ch); err != nil {
			return wire.Changes{}, fmt.Errorf("decode change %d: %w", seq, err)
		}
		if seq == after {
			if ch.ID != afterID {
				return wire.Changes{Head: head, Changes: []wire.Change{}, Reset: true}, nil
			}
			continue
		}
		out.Changes = append(out.Changes, ch)
	}
	return out, nil
}

// Purge deletes entries older than cutoff from the tail forward and returns
// how many it removed. It reads and deletes in batches without the feed lock
// (a large purge must not stall appends and polls: 3,000 deletes under it once
// held a poll for 3.3 s), then takes the lock only to move the tail. A reader
// that meets an entry deleted before the tail moved answers reset.
func (f *Feed) Purge(ctx context.Context, s logical.Storage, cutoff time.Time) (int, error) {
	purged := 0
	for {
		f.mu.Lock()
		if err := f.loadLocked(ctx, s); err != nil {
			f.mu.Unlock()
			return purged, err
		}
		from, head := f.tail, f.head
		f.mu.Unlock()
		if from > head {
			return purged, nil
		}
		next, n, more, err := purgeBatch(ctx, s, from, min(head, from+feedPurgeBatch-1), cutoff)
		purged += n
		if next > from {
			if serr := f.advanceTail(ctx, s, next); serr != nil && err == nil {
				err = serr
			}
		}
		if err != nil || !more {
			return purged, err
		}
	}
}

// purgeBatch deletes the entries from..to older than cutoff, in order. next is
// the first seq it kept (the new tail); more is false once it met a younger one.
func purgeBatch(ctx context.Context, s logical.Storage, from, to uint64, cutoff time.Time) (next uint64, n int, more bool, err error) {
	for seq := from; seq <= to; seq++ {
		entry, err := s.Get(ctx, feedKey(seq))
		if err != nil {
			return seq, n, false, fmt.Errorf("read change %d: %w", seq, err)
		}
		if entry != nil {
			var ch wire.Change
			if err := entry.DecodeJSON(&ch); err != nil {
				return seq, n, false, fmt.Errorf("decode change %d: %w", seq, err)
			}
			if !ch.Time.Before(cutoff) {
				return seq, n, false, nil
			}
			if err := s.Delete(ctx, feedKey(seq)); err != nil {
				return seq, n, false, fmt.Errorf("delete change %d: %w", seq, err)
			}
			n++
		}
	}
	return to + 1, n, true, nil
}

// advanceTail moves the tail to next (entries before it are gone) and stores
// it. The one small write is under the lock, as every append's is.
func (f *Feed) advanceTail(ctx context.Context, s logical.Storage, next uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if next <= f.tail {
		return nil
	}
	f.tail = next
	drop := 0
	for drop < len(f.recent) && f.recent[drop].Seq < next {
		drop++
	}
	f.recent = f.recent[drop:]
	return f.saveMetaLocked(ctx, s)
}
