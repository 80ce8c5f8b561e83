package backend

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Shared publish marks of creates (publish.go keeps the order; this file keeps
// the marks). A create must be marked unpublished before its record is written,
// like every change, but a mark of its own costs two storage operations per key
// (the put before, the delete after), about a sixth of what a create costs
// Vault. Creates in flight at the same time share one mark instead: the first
// to arrive writes a batch entry naming every create queued by then, while the
// others wait for it (or queue for the next), so under load one put and one
// delete cover many keys, and alone a create pays what it paid before.
//
// A batch entry is deleted once every create it names has published. A create
// that fails keeps the entry: the repair pass reads it and, for each key still
// holding its create, drops the record (its name never came to point at it) or
// publishes it. The repair pass skips the batches this node still has in
// flight: their creates publish, or keep the entry, by themselves.

const storageUnpublishedCreates = storageUnpublishedPrefix + "creates/"

// createBatch is the stored form of a batch entry.
type createBatch struct {
	KeyIDs []string `json:"key_ids"`
}

// markBatch is one batch entry in flight on this node.
type markBatch struct {
	id     string
	left   int      // mutations named by the entry that have not yet settled
	failed []string // creates of the settled mutations that failed
}

// markWaiter is one mutation's creates, queued for the next batch entry.
type markWaiter struct {
	keyIDs []string
	done   bool
	batch  *markBatch
	err    error
}

// createMarks coalesces the marks of concurrent creates.
type createMarks struct {
	mu      sync.Mutex
	turn    *sync.Cond // on mu: a batch entry was written
	queue   []*markWaiter
	writing bool
	live    map[string]*markBatch // batch id → batch, until its entry is settled
}

func newCreateMarks() *createMarks {
	m := &createMarks{live: map[string]*markBatch{}}
	m.turn = sync.NewCond(&m.mu)
	return m
}

// mark returns once a stored batch entry names every key in keyIDs. The caller
// ends it with settle, whatever happens next.
func (m *createMarks) mark(ctx context.Context, s logical.Storage, keyIDs []string) (*markBatch, error) {
	w := &markWaiter{keyIDs: keyIDs}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queue = append(m.queue, w)
	for m.writing && !w.done {
		m.turn.Wait()
	}
	if w.done {
		return w.batch, w.err
	}
	// This create leads: it writes the entry for everyone queued.
	waiters := m.queue
	m.queue, m.writing = nil, true
	id, err := newChangeID()
	batch := &markBatch{id: id, left: len(waiters)}
	if err == nil {
		m.live[id] = batch
		var stored createBatch
		for _, x := range waiters {
			stored.KeyIDs = append(stored.KeyIDs, x.keyIDs...)
		}
		m.mu.Unlock()
		err = putJSON(ctx, s, storageUnpublishedCreates+id, stored)
		m.mu.Lock()
		if err != nil {
			// Nothing was marked, so nothing is written: the entry, if it
			// landed after all, names only keys that were never stored.
			delete(m.live, id)
		}
	}
	for _, x := range waiters {
		x.done = true
		if err == nil {
			x.batch = batch
		} else {
			x.err = err
		}
	}
	m.writing = false
	m.turn.Broadcast()
	return w.batch, w.err
}

// settle ends one mutation's part of batch: failed says whether its creates
// (keyIDs) failed to publish. The last to settle deletes the entry when every
// create published; otherwise the entry is left to the repair pass, rewritten
// to name only the failed creates, so the others are not announced twice.
func (m *createMarks) settle(ctx context.Context, s logical.Storage, batch *markBatch, keyIDs []string, failed bool, warn func(string, ...interface{})) {
	m.mu.Lock()
	batch.left--
	if failed {
		batch.failed = append(batch.failed, keyIDs...)
	}
	last := batch.left == 0
	m.mu.Unlock()
	if !last {
		return
	}
	key := storageUnpublishedCreates + batch.id
	if len(batch.failed) == 0 {
		if err := s.Delete(ctx, key); err != nil {
			// Published already; a stale entry only costs duplicate entries later.
			warn("drop the publish mark of creates", "error", err)
		}
	} else if err := putJSON(ctx, s, key, createBatch{KeyIDs: batch.failed}); err != nil {
		// The entry as first written stays: the repair pass announces its
		// published creates once more, which only makes verifiers re-read them.
		warn("narrow the publish mark of failed creates", "error", err)
	}
	m.mu.Lock()
	delete(m.live, batch.id)
	m.mu.Unlock()
}

// inFlight reports whether this node's creates still own the batch entry id.
func (m *createMarks) inFlight(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.live[id]
	return ok
}

// republishCreates is the repair pass over batch entries (republish): for each
// entry no create in flight owns, every key still holding its create is
// dropped (never named) or published, then the entry is deleted.
func (b *Backend) republishCreates(ctx context.Context, s logical.Storage) (int, error) {
	ids, err := s.List(ctx, storageUnpublishedCreates)
	if err != nil {
		return 0, fmt.Errorf("list unpublished creates: %w", err)
	}
	done := 0
	for _, id := range ids {
		if b.createMarks.inFlight(id) {
			continue
		}
		var batch createBatch
		ok, err := getJSON(ctx, s, storageUnpublishedCreates+id, &batch)
		if err != nil {
			return done, err
		}
		if !ok {
			continue
		}
		for _, keyID := range batch.KeyIDs {
			published, err := b.republishCreate(ctx, s, keyID)
			if err != nil {
				return done, err
			}
			if published {
				done++
			}
		}
		if err := s.Delete(ctx, storageUnpublishedCreates+id); err != nil {
			return done, err
		}
	}
	return done, nil
}

// republishCreate settles one key of a batch entry under its name lock. A key
// changed since its create needs nothing: that later change was marked and
// published on its own, and verifiers read the record as it is now.
func (b *Backend) republishCreate(ctx context.Context, s logical.Storage, keyID string) (bool, error) {
	rec, unlock, err := b.lockRecord(ctx, s, keyID)
	defer unlock()
	if err != nil || rec == nil || lastOp(rec) != wire.OpCreated {
		return false, err
	}
	if dropped, err := b.undoUnnamedCreate(ctx, s, rec); err != nil || dropped {
		return false, err
	}
	ctx = context.WithoutCancel(ctx)
	seq, err := b.appendKey(ctx, s, rec)
	if err != nil {
		return false, err
	}
	b.logger.Warn("published a create whose publish had failed", "key_id", rec.KeyID, "seq", seq)
	b.sendKeyEvent(ctx, wire.OpCreated, rec)
	return true, nil
}
