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

// heldLookups blocks every lookup until it is released (one at a time, in
// the order sent, or all at once), and records what each asked and when.
type heldLookups struct {
	mu      sync.Mutex
	batches [][]string
	at      []time.Time
	holds   []chan struct{}
	sent    chan struct{}
	release chan struct{} // closed: every lookup, now and later, returns
}

func newHeldLookups() *heldLookups {
	return &heldLookups{sent: make(chan struct{}, 1000), release: make(chan struct{})}
}

func (h *heldLookups) Lookup(ctx context.Context, ids []string) (wire.Batch, error) {
	hold := make(chan struct{})
	h.mu.Lock()
	h.batches = append(h.batches, append([]string(nil), ids...))
	h.at = append(h.at, time.Now())
	h.holds = append(h.holds, hold)
	h.mu.Unlock()
	h.sent <- struct{}{}
	select {
	case <-hold:
	case <-h.release:
	case <-ctx.Done():
	}
	return wire.Batch{}, errors.New("held")
}

// releaseNth lets the n-th lookup sent (from 0) return.
func (h *heldLookups) releaseNth(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	close(h.holds[n])
}

func (h *heldLookups) asked() [][]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]string(nil), h.batches...)
}

func (h *heldLookups) sentAt(n int) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at[n]
}

// awaitSent waits for the next lookup to be sent.
func (h *heldLookups) awaitSent(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.sent:
	case <-time.After(5 * time.Second):
		t.Fatal("no lookup went out: " + what)
	}
}

// startMisses loads ids, each from its own goroutine.
func startMisses(l *loader, ids []string) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() { _, _ = l.load(context.Background(), id, false) })
	}
	return &wg
}

func newHeldLoader(src *heldLookups, spill time.Duration) *loader {
	l := newLoader(src, nil, newCache(16), hclog.NewNullLogger(), 10*time.Second, 2, func(int) {})
	l.spill = spill
	return l
}

// startHeldLead makes a loader (-max-in-flight 2) over held lookups and sends
// one miss, whose lookup holds the lead until released.
func startHeldLead(t *testing.T, spill time.Duration) (*heldLookups, *loader, *sync.WaitGroup) {
	t.Helper()
	src := newHeldLookups()
	l := newHeldLoader(src, spill)
	lead := startMisses(l, []string{"lead"})
	src.awaitSent(t, "the lead")
	return src, l, lead
}

// While the lead lookup is in flight, misses wait for it rather than go out
// one by one beside it: they go out together once it returns.
func TestLoaderSendsASecondLookupOnlyAfterSpill(t *testing.T) {
	src, l, lead := startHeldLead(t, time.Hour) // no spill here: only the lead may go out
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

// A miss waits at most its spill behind a slow lead, then goes out beside it
// with every miss queued by then — and not before its spill.
func TestLoaderSpillsBesideASlowLookup(t *testing.T) {
	const spill = 50 * time.Millisecond
	src, l, lead := startHeldLead(t, spill)
	queuedAt := time.Now()
	queued := startMisses(l, []string{"a", "b"})
	src.awaitSent(t, "beside a lead held past spill")
	assert.GreaterOrEqual(t, src.sentAt(1).Sub(queuedAt), spill, "the second lookup went out before any miss had waited its spill")
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

// A caller whose miss already went out in a lookup only awaits its answer: its
// spill does not send, beside the lead, misses that have not waited theirs.
func TestLoaderSpillsOnlyForAMissStillQueued(t *testing.T) {
	const spill = 200 * time.Millisecond
	src := newHeldLookups()
	l := newHeldLoader(src, spill)

	first := startMisses(l, []string{"first"})
	src.awaitSent(t, "the first lead")
	taken := startMisses(l, []string{"a", "c"})
	require.Eventually(t, func() bool { return len(l.queue) == 2 }, 5*time.Second, time.Millisecond)
	src.releaseNth(0) // a and c go out on the lead; one of their callers only waits
	src.awaitSent(t, "the queued misses on the freed lead")
	// b queues well after a and c, whose callers' timers fire first.
	time.Sleep(spill / 2)
	queuedAt := time.Now()
	late := startMisses(l, []string{"b"})
	src.awaitSent(t, "b beside the lead, after its spill")
	assert.GreaterOrEqual(t, src.sentAt(2).Sub(queuedAt), spill, "b went out beside the lead before it had waited its spill")
	assert.Equal(t, []string{"b"}, src.asked()[2])
	close(src.release)
	first.Wait()
	taken.Wait()
	late.Wait()
}

// A full batch waiting goes out beside the lead at once, whole, without
// waiting to spill.
func TestLoaderSendsAFullBatchBesideTheLead(t *testing.T) {
	src, l, lead := startHeldLead(t, time.Hour)
	ids := make([]string, wire.MaxBatch)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%03d", i)
	}
	queued := startMisses(l, ids)
	src.awaitSent(t, "a full batch beside the lead")
	assert.Len(t, src.asked()[1], wire.MaxBatch, "the lookup beside the lead went out before the batch was full")
	close(src.release)
	lead.Wait()
	queued.Wait()
	assert.Len(t, src.asked(), 2, "every queued miss went out in that one lookup")
}

// A background refresh holds an extra slot, not the lead: a miss beside it
// goes out at once. (Had the refresh taken the lead, the miss would wait for
// its spill, an hour here.)
func TestLoaderRefreshLeavesTheLeadToMisses(t *testing.T) {
	src := newHeldLookups()
	l := newHeldLoader(src, time.Hour)

	done := make(chan struct{})
	go func() { l.refresh(context.Background(), []string{"old"}); close(done) }()
	src.awaitSent(t, "the refresh")
	miss := startMisses(l, []string{"new"})
	src.awaitSent(t, "a miss beside a background refresh")
	close(src.release)
	miss.Wait()
	<-done
}

// With -max-in-flight 1 there is no extra slot: queued misses wait for the
// lead however long it takes, and go out together after it.
func TestLoaderWithOneInFlightNeverSpills(t *testing.T) {
	src := newHeldLookups()
	l := newLoader(src, nil, newCache(16), hclog.NewNullLogger(), 10*time.Second, 1, func(int) {})
	l.spill = time.Millisecond

	lead := startMisses(l, []string{"lead"})
	src.awaitSent(t, "the lead")
	queued := startMisses(l, []string{"a", "b"})
	require.Eventually(t, func() bool { return len(l.queue) == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // many spills' worth
	assert.Len(t, src.asked(), 1)
	src.releaseNth(0)
	src.awaitSent(t, "the queued misses after the lead")
	got := src.asked()[1]
	sort.Strings(got)
	assert.Equal(t, []string{"a", "b"}, got)
	close(src.release)
	lead.Wait()
	queued.Wait()
}
