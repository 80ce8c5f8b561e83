package verifier

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestUsageIsBatched(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	a, aID := f.issue("a", "ops", keyOpts{})
	b, bID := f.issue("b", "ops", keyOpts{})
	v, stop := startVerifier(t, f, func(c *Config) { c.UsageFlush = time.Hour })
	for i := range 1000 {
		key := a
		if i%4 == 0 {
			key = b
		}
		require.Equal(t, CodeValid, check(t, v, Request{Key: key, ClientIP: netip.MustParseAddr("10.0.0.9")}))
	}
	check(t, v, Request{Key: forge(t, a)}) // not a use of a
	assert.Empty(t, f.usageWrites(), "no Vault write per request")
	stop() // shutdown flushes
	writes := f.usageWrites()
	require.Len(t, writes, 1, "one usage write for 1000 verifies")
	counts := map[string]uint64{}
	for _, u := range writes[0] {
		counts[u.KeyID] = u.Count
		assert.Equal(t, "10.0.0.9", u.LastUsedFrom)
		assert.WithinDuration(t, time.Now(), u.LastUsedAt, time.Minute)
	}
	assert.Equal(t, map[string]uint64{aID: 750, bID: 250}, counts)
}

func TestUsageBoundedMemory(t *testing.T) {
	var sent []wire.Usage
	dropped := 0
	r := newReporter(func(_ context.Context, u []wire.Usage) error { sent = append(sent, u...); return nil },
		2, hclog.NewNullLogger(), func() { dropped++ }, time.Second)
	r.Record("a", localhost, 1)
	r.Record("b", localhost, 2)
	r.Record("c", localhost, 3) // over the limit: dropped, early flush asked
	r.Record("a", localhost, 4) // held keys still count
	assert.Equal(t, 1, dropped)
	assert.Len(t, r.full, 1, "a full buffer asks for an early flush")
	require.NoError(t, r.Flush(context.Background()))
	assert.Len(t, sent, 2)
	r.Record("c", localhost, 5)
	assert.Equal(t, 1, dropped, "room again after the flush")
}

func TestUsageFlushWhileRecording(t *testing.T) {
	var mu sync.Mutex
	var total uint64
	r := newReporter(func(_ context.Context, u []wire.Usage) error {
		mu.Lock()
		defer mu.Unlock()
		for _, x := range u {
			total += x.Count
		}
		return nil
	}, 1000, hclog.NewNullLogger(), func() {}, time.Second)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				r.Record(string(rune('a'+g))+string(rune('a'+i%7)), localhost, int64(i))
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			_ = r.Flush(context.Background())
		}
	})
	wg.Wait()
	require.NoError(t, r.Flush(context.Background()))
	assert.Equal(t, uint64(8000), total, "every use reported exactly once")
}
