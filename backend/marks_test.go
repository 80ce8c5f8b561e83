package backend

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// holdFirstBatchMark makes the first write of a shared create mark wait until
// the returned release is called; puts counts every such write.
func holdFirstBatchMark(fs *faultStorage) (entered <-chan struct{}, release func(), puts *atomic.Int32) {
	in, gate := make(chan struct{}), make(chan struct{})
	puts = &atomic.Int32{}
	fs.onPut = func(key string) {
		if !strings.HasPrefix(key, storageUnpublishedCreates) {
			return
		}
		if puts.Add(1) == 1 {
			close(in)
			<-gate
		}
	}
	var once sync.Once
	return in, func() { once.Do(func() { close(gate) }) }, puts
}

// arrived waits (bounded) for ch to be closed.
func arrived(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never happened", what)
	}
}

// queued waits (bounded) until n mutations wait for the next shared mark.
func queued(t *testing.T, m *createMarks, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.queue) == n
	}, 10*time.Second, time.Millisecond)
}

// createAsync issues name in the background; the error arrives on the channel.
func createAsync(e *testEnv, name string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := e.do(logical.CreateOperation, "tenants/acme/keys/"+name, map[string]interface{}{"role": "dev"})
		done <- err
	}()
	return done
}

// Creates that arrive while a shared mark is being written wait and share the
// next one: six creates, two mark writes (the first alone, then the five
// queued behind it), each create published once, and no mark left behind.
func TestConcurrentCreatesShareOnePublishMark(t *testing.T) {
	e := configured(t)
	head := e.changes(0, "").Head
	fs := withFaults(e)
	entered, release, puts := holdFirstBatchMark(fs)
	defer release()
	first := createAsync(e, "k0")
	arrived(t, entered, "the first shared mark write")
	var rest []<-chan error
	for i := 1; i < 6; i++ {
		rest = append(rest, createAsync(e, fmt.Sprintf("k%d", i)))
	}
	queued(t, e.b.createMarks, 5)
	release()
	require.NoError(t, <-first)
	for _, done := range rest {
		require.NoError(t, <-done)
	}
	assert.Equal(t, int32(2), puts.Load(), "one mark for the first create, one for the five queued behind it")
	assert.Empty(t, e.unpublishedMarks())
	created := map[string]int{}
	for _, c := range e.changes(head, "").Changes {
		if c.Op == wire.OpCreated {
			created[c.KeyID]++
		}
	}
	assert.Len(t, created, 6)
	for id, n := range created {
		assert.Equal(t, 1, n, "key %s announced once", id)
	}
}

// When one create sharing a mark fails after its record is written, the mark
// stays for the repair pass, narrowed to that create: the repair drops the
// unnamed record, and the creates that succeeded are not announced again.
func TestFailedCreateKeepsOnlyItsShareOfTheMark(t *testing.T) {
	e := configured(t)
	fs := withFaults(e)
	entered, release, _ := holdFirstBatchMark(fs)
	defer release()
	fs.failPut = func(key string) bool { return key == storageNamePrefix+"acme/bad" }
	fs.failDelete = func(key string) bool { return strings.HasPrefix(key, storageKeyPrefix) } // the create's own cleanup fails too
	first := createAsync(e, "first")
	arrived(t, entered, "the first shared mark write")
	good, bad := createAsync(e, "good"), createAsync(e, "bad")
	queued(t, e.b.createMarks, 2)
	head := e.changes(0, "").Head
	release()
	require.NoError(t, <-first)
	require.NoError(t, <-good)
	require.Error(t, <-bad)
	fs.failPut, fs.failDelete = nil, nil

	marks := e.storedKeys(storageUnpublishedCreates)
	require.Len(t, marks, 1, "the mark of the failed create stays")
	var batch createBatch
	ok, err := getJSON(context.Background(), e.s, storageUnpublishedCreates+marks[0], &batch)
	require.NoError(t, err)
	require.True(t, ok)
	require.Len(t, batch.KeyIDs, 1, "narrowed to the failed create")
	badID := batch.KeyIDs[0]
	require.Len(t, e.storedKeys(storageKeyPrefix), 3, "the failed create's record is still there")

	afterCreates := e.changes(0, "").Head
	assert.Equal(t, "0", fmt.Sprint(e.tidy()["republished"]), "nothing to announce: the failed key was never shown")
	assert.Empty(t, e.unpublishedMarks())
	assert.Len(t, e.storedKeys(storageKeyPrefix), 2, "its record is dropped")
	assert.Empty(t, e.changes(afterCreates, "").Changes, "and nothing announced twice")
	assert.False(t, e.published(head, badID, wire.OpCreated))
}

// The repair pass leaves alone a shared mark whose creates are still in flight
// on this node: it would find their records not yet written and drop the
// mark, and a crash before their publish would then leave them unannounced.
func TestRepairSkipsAMarkItsCreatesStillHold(t *testing.T) {
	e := configured(t)
	fs := withFaults(e)
	marked := make(chan struct{})
	gate := make(chan struct{})
	fs.onPut = func(key string) {
		if strings.HasPrefix(key, storageKeyPrefix) { // the record, after its mark
			close(marked)
			<-gate
		}
	}
	head := e.changes(0, "").Head
	done := createAsync(e, "k")
	arrived(t, marked, "the create's record write")
	_, err := e.b.republish(context.Background(), e.s)
	require.NoError(t, err)
	assert.Len(t, e.storedKeys(storageUnpublishedCreates), 1, "the mark of a create in flight stays")
	close(gate)
	require.NoError(t, <-done)
	assert.Empty(t, e.unpublishedMarks())
	keyID := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["key_id"].(string)
	assert.True(t, e.published(head, keyID, wire.OpCreated))
}

// A create whose record and name are written but whose feed append fails
// keeps its share of the mark; the repair pass announces it once.
func TestRepairAnnouncesACreateWhoseAppendFailed(t *testing.T) {
	e := configured(t)
	fs := withFaults(e)
	head := e.changes(0, "").Head
	fs.failFeed.Store(1)
	_, err := e.do(logical.CreateOperation, "tenants/acme/keys/k", map[string]interface{}{"role": "dev"})
	require.Error(t, err)
	keyID := e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["key_id"].(string)
	require.False(t, e.published(head, keyID, wire.OpCreated), "the append failed")
	require.Len(t, e.storedKeys(storageUnpublishedCreates), 1)

	assert.Equal(t, "1", fmt.Sprint(e.tidy()["republished"]))
	assert.Empty(t, e.unpublishedMarks())
	n := 0
	for _, c := range e.changes(head, "").Changes {
		if c.KeyID == keyID {
			assert.Equal(t, wire.OpCreated, c.Op)
			n++
		}
	}
	assert.Equal(t, 1, n, "announced once")
	assert.Equal(t, "0", fmt.Sprint(e.tidy()["republished"]), "and not again")
}

// writeCounter counts storage writes (puts and deletes) and makes each take d,
// as a round trip to Vault's storage does.
type writeCounter struct {
	logical.Storage
	d      time.Duration
	writes atomic.Int64
}

func (w *writeCounter) Put(ctx context.Context, e *logical.StorageEntry) error {
	w.writes.Add(1)
	time.Sleep(w.d)
	return w.Storage.Put(ctx, e)
}

func (w *writeCounter) Delete(ctx context.Context, key string) error {
	w.writes.Add(1)
	time.Sleep(w.d)
	return w.Storage.Delete(ctx, key)
}

// BenchmarkCreateWrites issues keys to storage whose writes take 100µs and
// reports the storage writes per create. "one-at-a-time" is what every create
// wrote before creates shared their publish mark (a create alone still pays
// its own: mark, record, name, feed entry, mark delete); "16-concurrent" is 16
// creates in flight, sharing marks. Measured in one run.
func BenchmarkCreateWrites(b *testing.B) {
	for _, mode := range []string{"one-at-a-time", "16-concurrent"} {
		b.Run(mode, func(b *testing.B) {
			w := &writeCounter{Storage: &logical.InmemStorage{}, d: 100 * time.Microsecond}
			e := newTestEnvWith(b, func(c *logical.BackendConfig) { c.StorageView = w })
			// No quota: -benchtime 2s issues more keys than the default tenant's 10,000.
			e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t", "max_keys_per_tenant": 0})
			e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
			var n atomic.Int64
			create := func() error {
				resp, err := e.do(logical.CreateOperation, fmt.Sprintf("tenants/acme/keys/k%d", n.Add(1)), map[string]interface{}{"role": "dev"})
				if err == nil && resp.IsError() {
					err = resp.Error()
				}
				return err
			}
			before := w.writes.Load()
			b.ResetTimer()
			if mode == "one-at-a-time" {
				for range b.N {
					if err := create(); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := create(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(w.writes.Load()-before)/float64(b.N), "writes/create")
		})
	}
}
