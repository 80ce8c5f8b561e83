package verifier

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
)

func randomToken(t testing.TB) string {
	tok, err := token.Generate(token.DefaultPrefix)
	require.NoError(t, err)
	return tok.String()
}

// TestUnknownKeysDoNotEvictKnownOnes is defect 12: random tokens with valid
// checksums each get a NOT_FOUND answer; on the old code those answers went
// into the same bounded cache and evicted the known keys.
func TestUnknownKeysDoNotEvictKnownOnes(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	var known []string
	for _, name := range []string{"a", "b", "c"} {
		k, _ := f.issue(name, "ops", keyOpts{})
		known = append(known, k)
	}
	v, _ := startVerifier(t, f, func(c *Config) { c.CacheSize = 4 * cacheShards })
	for _, k := range known {
		require.Equal(t, CodeValid, check(t, v, Request{Key: k}))
	}
	for i := range 500 {
		// From many sources, so that none is held back as a flood.
		from := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1})
		verdict, err := v.Check(context.Background(), Request{Key: randomToken(t), ClientIP: from})
		require.NoError(t, err)
		require.Equal(t, CodeNotFound, verdict.Code)
	}
	assert.LessOrEqual(t, v.cache.NegativeLen(), 4*cacheShards/negativeShare+cacheShards, "NOT_FOUND answers are bounded")
	lookups := len(f.lookupCalls())
	for _, k := range known {
		assert.Equal(t, CodeValid, check(t, v, Request{Key: k}))
	}
	assert.Equal(t, lookups, len(f.lookupCalls()), "every known key was still cached")
}

// TestFloodDoesNotStarveRealMisses is defect 12: a source that keeps
// presenting unknown keys fills the miss queue; a real cold key asked for
// afterwards must be in the next lookup, not behind the flood. On the old
// code (one FIFO queue) it waited behind every queued unknown key.
func TestFloodDoesNotStarveRealMisses(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	realKey, realID := f.issue("real", "ops", keyOpts{})
	v, _ := startVerifier(t, f, func(c *Config) { c.MaxInFlight = 1 })
	attacker := netip.MustParseAddr("203.0.113.7")
	for range floodThreshold {
		verdict, err := v.Check(context.Background(), Request{Key: randomToken(t), ClientIP: attacker})
		require.NoError(t, err)
		require.Equal(t, CodeNotFound, verdict.Code)
	}

	// One lookup in flight, stuck: every other miss queues.
	inLookup, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.setLookupHook(func([]string) { once.Do(func() { close(inLookup); <-release }) })
	go func() {
		_, _ = v.Check(context.Background(), Request{Key: randomToken(t), ClientIP: netip.MustParseAddr("192.0.2.50")})
	}()
	<-inLookup

	const flood = 600
	var refused atomic.Int32
	var wg sync.WaitGroup
	for range flood {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := v.Check(ctx, Request{Key: randomToken(t), ClientIP: attacker}); err != nil {
				refused.Add(1)
			}
		})
	}
	queued := func() int { return len(v.loader.queue) + len(v.loader.low) }
	require.Eventually(t, func() bool { return queued()+int(refused.Load()) == flood }, 10*time.Second, time.Millisecond)
	assert.Positive(t, refused.Load(), "misses of a flooding source beyond its small queue fail at once")

	answer := make(chan Code, 1)
	go func() { answer <- check(t, v, Request{Key: realKey, ClientIP: netip.MustParseAddr("10.9.9.9")}) }()
	require.Eventually(t, func() bool { return queued()+int(refused.Load()) == flood+1 }, 5*time.Second, time.Millisecond)
	f.setLookupHook(nil)
	close(release)
	assert.Equal(t, CodeValid, <-answer)
	wg.Wait()

	calls := f.lookupCalls()
	next := -1
	for i, ids := range calls {
		for _, id := range ids {
			if id == realID {
				next = i
			}
		}
	}
	require.Positive(t, next)
	assert.Len(t, calls[next-1], 1, "the lookup before it was the stuck one: the real key was in the next batch")
}

// TestOneBadDataKeyFailsAlone is defect 6: transit answers 400 for a whole
// batch when one item fails. One record whose data key cannot be unwrapped
// must fail alone, not every miss batched with it (on the old code all three
// answered 503).
func TestOneBadDataKeyFailsAlone(t *testing.T) {
	for _, honours := range []bool{true, false} {
		name := "partial code honoured"
		if !honours {
			name = "partial code ignored: split"
		}
		t.Run(name, func(t *testing.T) {
			f := newFakeVault(t)
			opsRole(f)
			f.ignorePartialCode = !honours
			good1, _ := f.issue("good1", "ops", keyOpts{})
			good2, _ := f.issue("good2", "ops", keyOpts{})
			bad, badID := f.issue("bad", "ops", keyOpts{})
			f.mu.Lock()
			s := *f.entries[badID].Sealed
			s.WrappedDEK = "vault:v1:Z2FyYmFnZQ==" // not a data key transit would unwrap
			f.entries[badID].Sealed = &s
			f.mu.Unlock()
			v, _ := startVerifier(t, f, func(c *Config) { c.MaxInFlight = 1 })

			// Batch all three behind one stuck lookup.
			inLookup, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			f.setLookupHook(func([]string) { once.Do(func() { close(inLookup); <-release }) })
			go func() { _, _ = v.Check(context.Background(), Request{Key: randomToken(t), ClientIP: localhost}) }()
			<-inLookup
			type answer struct {
				code Code
				err  error
			}
			answers := make([]chan answer, 3)
			for i, k := range []string{good1, good2, bad} {
				answers[i] = make(chan answer, 1)
				go func() {
					verdict, err := v.Check(context.Background(), Request{Key: k, ClientIP: localhost})
					answers[i] <- answer{verdict.Code, err}
				}()
			}
			require.Eventually(t, func() bool { return len(v.loader.queue) == 3 }, 5*time.Second, time.Millisecond)
			f.setLookupHook(nil)
			close(release)
			for i := range 2 {
				a := <-answers[i]
				require.NoError(t, a.err)
				assert.Equal(t, CodeValid, a.code)
			}
			a := <-answers[2]
			assert.ErrorIs(t, a.err, ErrUnavailable, "the undecryptable one fails closed")
			calls := f.lookupCalls()
			assert.Len(t, calls[len(calls)-1], 3, "the three were one batch")
		})
	}
}
