package verifier

import (
	"context"
	"errors"
	"fmt"
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

// heldLookups blocks every lookup until release is closed, and records what
// each asked and when it was sent.
type heldLookups struct {
	mu      sync.Mutex
	batches [][]string
	sent    chan struct{}
	release chan struct{}
}

func newHeldLookups() *heldLookups {
	return &heldLookups{sent: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (h *heldLookups) Lookup(ctx context.Context, ids []string) (wire.Batch, error) {
	h.mu.Lock()
	h.batches = append(h.batches, append([]string(nil), ids...))
	h.mu.Unlock()
	h.sent <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	return wire.Batch{}, errors.New("held")
}

func (h *heldLookups) asked() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]string(nil), h.batches...)
}

// startMisses loads ids, each from its own goroutine, and returns when every
// one is queued (or sent).
func startMisses(l *loader, ids []string) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { _, _ = l.load(context.Background(), id, false) })
	}
	return &wg
}

// While the lead lookup is in flight, misses wait for it rather than go out
// one by one beside it: they go out together once it returns. A miss waits at
// most spill, then takes the extra slot with every miss queued by then.
func TestLoaderSendsASecondLookupOnlyAfterSpill(t *testing.T) {
	src := newHeldLookups()
	l := newLoader(src, nil, newCache(16), hclog.NewNullLogger(), 10*time.Second, 2, func(int) {})
	l.spill = time.Hour // no spill in this part: only the lead may go out

	lead := startMisses(l, []string{"lead"})
	<-src.sent
	queued := startMisses(l, []string{"a", "b", "c"})
	require.Eventually(t, func() bool { return len(l.queue) == 3 || len(src.asked()) > 1 }, 5*time.Second, time.Millisecond)
	// Every queued miss is waiting on the lead and a free extra slot: none
	// may take it before its spill, so nothing more is sent.
	time.Sleep(20 * time.Millisecond)
	assert.Len(t, src.asked(), 1, "a miss went out beside the lead before its spill")

	close(src.release)
	lead.Wait()
	queued.Wait()
	got := src.asked()
	require.Len(t, got, 2, "the queued misses went out in one lookup after the lead")
	sort.Strings(got[1])
	assert.Equal(t, []string{"a", "b", "c"}, got[1])
}

func TestLoaderSpillsBesideASlowLookup(t *testing.T) {
	src := newHeldLookups()
	l := newLoader(src, nil, newCache(16), hclog.NewNullLogger(), 10*time.Second, 2, func(int) {})
	l.spill = 50 * time.Millisecond

	lead := startMisses(l, []string{"lead"})
	<-src.sent
	queued := startMisses(l, []string{"a", "b"})
	select {
	case <-src.sent: // the spilled lookup, while the lead is still held
	case <-time.After(5 * time.Second):
		t.Fatal("no lookup went out beside a lead held past spill")
	}
	close(src.release)
	lead.Wait()
	queued.Wait()
	var beside []string
	for _, b := range src.asked()[1:] {
		beside = append(beside, b...)
	}
	sort.Strings(beside)
	assert.Equal(t, []string{"a", "b"}, beside, "each queued miss was sent once")
}

// A full batch waiting goes out beside the lead at once, without waiting to spill.
func TestLoaderSendsAFullBatchBesideTheLead(t *testing.T) {
	src := newHeldLookups()
	l := newLoader(src, nil, newCache(16), hclog.NewNullLogger(), 10*time.Second, 2, func(int) {})
	l.spill = time.Hour

	lead := startMisses(l, []string{"lead"})
	<-src.sent
	ids := make([]string, wire.MaxBatch)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%03d", i)
	}
	queued := startMisses(l, ids)
	select {
	case <-src.sent:
	case <-time.After(5 * time.Second):
		t.Fatal("a full batch waited behind the lead")
	}
	close(src.release)
	lead.Wait()
	queued.Wait()
	total := 0
	for _, b := range src.asked()[1:] {
		total += len(b)
	}
	assert.Equal(t, wire.MaxBatch, total, "every queued miss was sent once")
}

// A background refresh holds an extra slot, not the lead: a miss beside it goes out at once.
func TestLoaderRefreshLeavesTheLeadToMisses(t *testing.T) {
	src := newHeldLookups()
	l := newLoader(src, nil, newCache(16), hclog.NewNullLogger(), 10*time.Second, 2, func(int) {})
	l.spill = time.Hour

	done := make(chan struct{})
	go func() { l.refresh(context.Background(), []string{"old"}); close(done) }()
	<-src.sent
	miss := startMisses(l, []string{"new"})
	select {
	case <-src.sent:
	case <-time.After(5 * time.Second):
		t.Fatal("a miss waited behind a background refresh")
	}
	close(src.release)
	miss.Wait()
	<-done
}
