package backend

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// blockingDeletes holds the first storage Delete until released.
type blockingDeletes struct {
	logical.Storage
	once    sync.Once
	blocked chan struct{}
	release chan struct{}
}

func (b *blockingDeletes) Delete(ctx context.Context, key string) error {
	b.once.Do(func() {
		close(b.blocked)
		<-b.release
	})
	return b.Storage.Delete(ctx, key)
}

// within fails the test when fn does not return in a generous bound: a
// deadlock guard, not a timing assertion.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not complete while a purge was deleting: the feed lock is held across storage I/O", what)
	}
}

func appendN(t *testing.T, f *Feed, s logical.Storage, n int, at time.Time) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, err := f.Append(context.Background(), s, wire.Change{Role: "dev", Op: wire.OpRoleUpdated}, at)
		require.NoError(t, err)
	}
}

// A large purge must not stall appends and polls: it deletes without the lock.
func TestFeedPurgeDoesNotBlockAppendOrRead(t *testing.T) {
	ctx := context.Background()
	store := &logical.InmemStorage{}
	old := time.Now().Add(-2 * time.Hour)
	f := NewFeed()
	appendN(t, f, store, 3*feedPurgeBatch, old)

	bs := &blockingDeletes{Storage: store, blocked: make(chan struct{}), release: make(chan struct{})}
	purged := make(chan int)
	go func() {
		n, err := f.Purge(ctx, bs, time.Now().Add(-time.Hour))
		assert.NoError(t, err)
		purged <- n
	}()
	<-bs.blocked // the purge is inside a storage delete
	within(t, "an append", func() {
		_, err := f.Append(ctx, store, wire.Change{Role: "dev", Op: wire.OpRoleUpdated}, time.Now())
		assert.NoError(t, err)
	})
	within(t, "a poll", func() {
		_, err := f.Since(ctx, store, 0, "")
		assert.NoError(t, err)
	})
	close(bs.release)
	assert.Equal(t, 3*feedPurgeBatch, <-purged)
	got, err := f.Since(ctx, store, 0, "")
	require.NoError(t, err)
	assert.True(t, got.Reset, "after=0 is now behind the tail")
	cur, err := f.Since(ctx, store, uint64(3*feedPurgeBatch), "")
	require.NoError(t, err)
	assert.False(t, cur.Reset)
	require.Len(t, cur.Changes, 1)
}

// An entry missing between after and the head (purged while a follower read)
// is answered as reset, never skipped.
func TestFeedGapAnswersReset(t *testing.T) {
	ctx := context.Background()
	store := &logical.InmemStorage{}
	appendN(t, NewFeed(), store, 10, time.Now())
	f := NewFeed() // a fresh node: nothing in memory, reads come from storage
	require.NoError(t, f.Load(ctx, store))
	require.NoError(t, store.Delete(ctx, feedKey(5)))

	got, err := f.Since(ctx, store, 2, "")
	require.NoError(t, err)
	assert.True(t, got.Reset, "seq 5 is gone: the follower must resync, not skip it")
	after, err := f.Since(ctx, store, 5, "")
	require.NoError(t, err)
	assert.False(t, after.Reset, "nothing is missing after 5")
	assert.Len(t, after.Changes, 5)
}

// after_id tells this feed from another history with the same seqs.
func TestFeedAfterID(t *testing.T) {
	ctx := context.Background()
	store := &logical.InmemStorage{}
	f := NewFeed()
	appendN(t, f, store, 5, time.Now())
	page, err := f.Since(ctx, store, 0, "")
	require.NoError(t, err)
	require.Len(t, page.Changes, 5)
	ids := map[string]bool{}
	for _, c := range page.Changes {
		assert.Len(t, c.ID, 16)
		ids[c.ID] = true
	}
	assert.Len(t, ids, 5, "ids are unique")
	at3 := page.Changes[2].ID

	// The same mount recreated: same seqs, other entries.
	other := &logical.InmemStorage{}
	g := NewFeed()
	appendN(t, g, other, 6, time.Now())
	reloaded := NewFeed()
	require.NoError(t, reloaded.Load(ctx, store))

	for _, c := range []struct {
		name    string
		f       *Feed
		s       logical.Storage
		after   uint64
		afterID string
		reset   bool
		n       int
	}{
		{"same history, from memory", f, store, 3, at3, false, 2},
		{"same history, from storage", reloaded, store, 3, at3, false, 2},
		{"no after_id: no check", g, other, 3, "", false, 3},
		{"recreated mount, from memory", g, other, 3, at3, true, 0},
		{"recreated mount, from storage", func() *Feed { r := NewFeed(); require.NoError(t, r.Load(ctx, other)); return r }(), other, 3, at3, true, 0},
		{"beyond the head", f, store, 9, "", true, 5},
		{"at the head", f, store, 5, page.Changes[4].ID, false, 0},
	} {
		got, err := c.f.Since(ctx, c.s, c.after, c.afterID)
		require.NoError(t, err, c.name)
		assert.Equal(t, c.reset, got.Reset, c.name)
		assert.Len(t, got.Changes, c.n, c.name)
	}
}

// The changes path answers each entry's id and accepts after_id.
func TestChangesPathAfterID(t *testing.T) {
	e := configured(t)
	e.issue("a", nil)
	e.issue("b", nil)
	page := e.changes(0, "")
	require.Len(t, page.Changes, 3, "the role's creation, then the two keys")
	require.NotEmpty(t, page.Changes[0].ID)
	ok := e.mustOK(logical.ReadOperation, "changes", map[string]interface{}{"after": "1", "after_id": page.Changes[0].ID}).Data
	assert.Equal(t, false, ok["reset"])
	bad := e.mustOK(logical.ReadOperation, "changes", map[string]interface{}{"after": "1", "after_id": "0123456789abcdef"}).Data
	assert.Equal(t, true, bad["reset"])
}

// gatedPuts holds the first store of chosen feed entries until released, and
// fails those told to fail; other puts go straight through. Its maps are
// fixed at creation (the test reads them without the lock).
type gatedPuts struct {
	logical.Storage
	mu      sync.Mutex
	started map[string]chan struct{} // closed when the put of that key began
	gates   map[string]chan error    // the put of that key returns what is sent here
	used    map[string]bool
}

func newGatedPuts(keys ...string) *gatedPuts {
	g := &gatedPuts{Storage: &logical.InmemStorage{}, started: map[string]chan struct{}{}, gates: map[string]chan error{}, used: map[string]bool{}}
	for _, k := range keys {
		g.started[k] = make(chan struct{})
		g.gates[k] = make(chan error, 1)
	}
	return g
}

func (g *gatedPuts) Put(ctx context.Context, e *logical.StorageEntry) error {
	g.mu.Lock()
	started, gate := g.started[e.Key], g.gates[e.Key]
	if g.used[e.Key] {
		gate = nil // only the first put of a key is held
	}
	g.used[e.Key] = true
	g.mu.Unlock()
	if gate != nil {
		close(started)
		if err := <-gate; err != nil {
			return err
		}
	}
	return g.Storage.Put(ctx, e)
}

type appendResult struct {
	seq uint64
	err error
}

func appendAsync(f *Feed, s logical.Storage, role string) chan appendResult {
	out := make(chan appendResult, 1)
	go func() {
		seq, err := f.Append(context.Background(), s, wire.Change{Role: role, Op: wire.OpRoleUpdated}, time.Now())
		out <- appendResult{seq, err}
	}()
	return out
}

func waitClosed(t *testing.T, what string, ch chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never happened: appends do not overlap their stores", what)
	}
}

// twoAppendsInFlight starts the appends of seq 1 and 2 (their changes naming
// roles r1 and r2) and returns once both stores are held in flight.
func twoAppendsInFlight(t *testing.T, r1, r2 string) (*Feed, *gatedPuts, chan appendResult, chan appendResult) {
	t.Helper()
	g := newGatedPuts(feedKey(1), feedKey(2))
	f := NewFeed()
	first := appendAsync(f, g, r1)
	waitClosed(t, "the store of seq 1", g.started[feedKey(1)])
	second := appendAsync(f, g, r2)
	waitClosed(t, "the store of seq 2 while seq 1's is in flight", g.started[feedKey(2)])
	return f, g, first, second
}

// Appends store their entries concurrently, yet seq 2 becomes visible (and its
// append returns) only after seq 1 is stored. With appends serialised across
// the store, seq 2's put never starts while seq 1's is held: the test fails.
func TestFeedAppendsOverlapAndPublishInOrder(t *testing.T) {
	ctx := context.Background()
	f, g, first, second := twoAppendsInFlight(t, "one", "two")
	g.gates[feedKey(2)] <- nil // seq 2 stored first

	// Give the second append every chance to return early: it must not.
	for i := 0; i < 100; i++ {
		head, err := f.Head(ctx, g)
		require.NoError(t, err)
		require.Zero(t, head, "seq 2 visible before seq 1 is stored")
		select {
		case r := <-second:
			t.Fatalf("append of seq 2 returned (%v) before seq 1 was stored", r)
		default:
		}
		time.Sleep(time.Millisecond)
	}
	g.gates[feedKey(1)] <- nil
	r1, r2 := <-first, <-second
	require.NoError(t, r1.err)
	require.NoError(t, r2.err)
	assert.Equal(t, uint64(1), r1.seq)
	assert.Equal(t, uint64(2), r2.seq)
	got, err := f.Since(ctx, g, 0, "")
	require.NoError(t, err)
	require.Len(t, got.Changes, 2)
	assert.Equal(t, "one", got.Changes[0].Role)
	assert.Equal(t, "two", got.Changes[1].Role)
}

// A failed store of seq 1 fails the append of seq 2 stored after it (it can
// never be published without seq 1), and the seqs are handed out again once
// both have returned: the feed, in memory and in storage, never has a gap or
// an entry nobody was told was published.
func TestFeedFailedStoreDrainsLaterAppends(t *testing.T) {
	ctx := context.Background()
	f, g, first, second := twoAppendsInFlight(t, "lost", "orphan")
	g.gates[feedKey(2)] <- nil
	g.gates[feedKey(1)] <- errors.New("storage unavailable")
	r1, r2 := <-first, <-second
	require.ErrorContains(t, r1.err, "storage unavailable")
	require.ErrorIs(t, r2.err, errFeedDrained)
	head, err := f.Head(ctx, g)
	require.NoError(t, err)
	require.Zero(t, head)

	appendN(t, f, g, 2, time.Now()) // seq 1 and 2 again, overwriting the orphan
	got, err := f.Since(ctx, g, 0, "")
	require.NoError(t, err)
	require.Len(t, got.Changes, 2)
	for i, ch := range got.Changes {
		assert.Equal(t, uint64(i+1), ch.Seq)
		assert.Equal(t, "dev", ch.Role)
	}
	// A fresh node reads the same from storage.
	reloaded := NewFeed()
	got2, err := reloaded.Since(ctx, g, 0, "")
	require.NoError(t, err)
	require.Len(t, got2.Changes, 2)
	for i := range got.Changes {
		assert.Equal(t, got.Changes[i].ID, got2.Changes[i].ID, "seq %d in storage is not the one published", i+1)
	}
}

// slowStorage sleeps d (at least: about a millisecond here) before every put
// under prefix, and every read too when reads is set, as a Raft commit or a
// plugin's gRPC round trip through Vault adds latency.
type slowStorage struct {
	logical.Storage
	d      time.Duration
	prefix string
	reads  bool
}

func (s slowStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if strings.HasPrefix(e.Key, s.prefix) {
		time.Sleep(s.d)
	}
	return s.Storage.Put(ctx, e)
}

func (s slowStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if s.reads && strings.HasPrefix(key, s.prefix) {
		time.Sleep(s.d)
	}
	return s.Storage.Get(ctx, key)
}

// BenchmarkFeedAppend appends from 16 goroutines to storage whose puts take
// 200µs. "serialised" holds one lock across each whole append, as appends did
// before they overlapped their stores; "overlapped" is the feed as it is. The
// pair is that change's before/after, measured in one run.
func BenchmarkFeedAppend(b *testing.B) {
	for _, mode := range []string{"serialised", "overlapped"} {
		b.Run(mode, func(b *testing.B) {
			s := slowStorage{Storage: &logical.InmemStorage{}, d: 200 * time.Microsecond}
			f := NewFeed()
			var serial sync.Mutex
			ctx := context.Background()
			b.SetParallelism(8) // 16 appenders on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if mode == "serialised" {
						serial.Lock()
					}
					_, err := f.Append(ctx, s, wire.Change{KeyID: "k", Op: wire.OpRevoked}, time.Now())
					if mode == "serialised" {
						serial.Unlock()
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// HoldCreated holds a page of new keys only: any other change ends the hold
// at once, and nothing else is ever held. Every hold below but the last is a
// minute long, so a hold that does not end on its own fails the test by
// timeout rather than by a clock.
func TestFeedHoldsNewKeysOnly(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	f := NewFeed()
	holding := make(chan struct{}, 100)
	f.holding = func(time.Duration) { holding <- struct{}{} }
	waiting := func(what string) {
		select {
		case <-holding:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no hold began", what)
		}
	}
	now := time.Now()
	appendOp := func(op string) uint64 {
		seq, err := f.Append(ctx, s, wire.Change{KeyID: "k", Op: op}, now)
		require.NoError(t, err)
		return seq
	}
	hold := func(after uint64, d time.Duration) <-chan bool {
		done := make(chan bool, 1)
		go func() { done <- f.HoldCreated(ctx, after, d) }()
		return done
	}
	returned := func(what string, done <-chan bool) bool {
		select {
		case held := <-done:
			return held
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still held after 10s", what)
			return false
		}
	}

	base := appendOp(wire.OpCreated) - 1
	assert.False(t, returned("nothing newer", hold(base+1, time.Minute)), "nothing pending: nothing to hold")

	// New keys only: held, also over a new key published meanwhile, until a
	// revocation is published, which ends it.
	done := hold(base, time.Minute)
	waiting("a page of one new key")
	appendOp(wire.OpCreated)
	waiting("a new key published during the hold")
	appendOp(wire.OpRevoked)
	assert.True(t, returned("a revocation published during the hold", done))
	page, err := f.Since(ctx, s, base, "")
	require.NoError(t, err)
	require.Len(t, page.Changes, 3)
	assert.Equal(t, wire.OpRevoked, page.Changes[2].Op, "the page read after the hold carries the revocation")

	// A page with any other change is never held.
	assert.False(t, returned("a revocation pending", hold(base, time.Minute)))
	for _, op := range []string{wire.OpDisabled, wire.OpUpdated, wire.OpRotated, wire.OpRoleUpdated} {
		after := appendOp(wire.OpCreated) - 1
		appendOp(op)
		assert.False(t, returned(op+" pending", hold(after, time.Minute)), op)
	}
	// A full page of new keys goes at once.
	after := appendOp(wire.OpCreated) - 1
	for range feedPage {
		appendOp(wire.OpCreated)
	}
	assert.False(t, returned("a full page pending", hold(after, time.Minute)))
	// Otherwise the hold ends when its time is up.
	after = appendOp(wire.OpCreated) - 1
	start := time.Now()
	assert.True(t, returned("a short hold", hold(after, 30*time.Millisecond)))
	assert.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)
	assert.Len(t, holding, 1, "only the short hold waited since the revocation")
}
