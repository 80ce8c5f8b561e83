package verifier

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// failingLookups records the batches asked and fails them all.
type failingLookups struct {
	mu      sync.Mutex
	batches [][]string
	err     error
}

func (f *failingLookups) Lookup(_ context.Context, ids []string) (wire.Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, append([]string(nil), ids...))
	return wire.Batch{}, f.err
}

func newTestLoader(src lookupSource) *loader {
	return newLoader(src, nil, newCache(16), hclog.NewNullLogger(), time.Second, 1, func(int) {})
}

// Misses queued while the slot was busy go out in one lookup with the next
// one, a key_id once however many wait for it, and every waiter gets the answer.
func TestLoaderBatchesQueuedMisses(t *testing.T) {
	src := &failingLookups{err: errors.New("vault down")}
	l := newTestLoader(src)
	waiting := []*pending{
		{keyID: "k1", done: make(chan struct{})},
		{keyID: "k2", done: make(chan struct{})},
		{keyID: "k1", done: make(chan struct{})},
	}
	for _, p := range waiting {
		l.queue <- p
	}
	_, err := l.load(context.Background(), "k3", false)
	require.ErrorIs(t, err, src.err)
	require.Len(t, src.batches, 1)
	got := src.batches[0]
	sort.Strings(got)
	assert.Equal(t, []string{"k1", "k2", "k3"}, got)
	for _, p := range waiting {
		<-p.done
		assert.ErrorIs(t, p.err, src.err, p.keyID)
	}
}

// A suspect source's miss fails at once when its small queue is full, instead
// of waiting behind real cold keys.
func TestLoaderRefusesLowMissesWhenTheirQueueIsFull(t *testing.T) {
	src := &failingLookups{}
	l := newTestLoader(src)
	for range cap(l.low) {
		l.low <- &pending{keyID: "x", done: make(chan struct{})}
	}
	_, err := l.load(context.Background(), "k", true)
	assert.ErrorIs(t, err, errFlooded)
	assert.ErrorIs(t, err, ErrUnavailable, "fails closed")
	assert.Empty(t, src.batches, "no lookup was sent")
}
