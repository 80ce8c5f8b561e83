package backend

import (
	"context"
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
