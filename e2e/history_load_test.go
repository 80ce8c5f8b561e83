package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/e2e/history"
)

// The role every key of the run belongs to, and the permission a narrowing
// takes away from it.
const (
	historyRole = "hr"
	narrowPerm  = "r:write"
	// backlogRole never changes, so nothing but the revocation in the
	// backlog evicts the paused verifier's cached key.
	backlogRole = "hb"
)

var (
	widePerms   = []string{"r:read", narrowPerm}
	narrowPerms = []string{"r:read"}
)

// historyRun is one live history run.
type historyRun struct {
	t        *testing.T
	cfg      historyConfig
	api      *apiClient
	rec      *historyRecorder
	fleet    []*fleetVerifier
	target   historyTarget
	deadline time.Time
}

// timed records one mutation around call; cut > 0 cancels the request after cut.
func (r *historyRun) timed(m history.Mutation, cut time.Duration, call func(ctx context.Context) (answer, error)) (history.Mutation, answer) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cut > 0 {
		tm := time.AfterFunc(cut, cancel)
		defer tm.Stop()
	}
	m.Invoke = time.Now()
	a, err := call(ctx)
	m.Return = time.Now()
	m.Outcome, m.Seq = outcome(err), a.Seq
	if err != nil {
		m.Err = err.Error()
	}
	if m.Op == history.Issue || m.Op == history.Rotate {
		m.NewKeyID = a.KeyID
		if err == nil && a.Key != "" {
			r.rec.known(a.KeyID, a.Key, m.Role)
		}
	}
	r.rec.mutation(m)
	return m, a
}

type ownedKey struct {
	name, keyID string
	disabled    bool
}

// historyClient owns its keys: every mutation of one key comes from one client, one
// at a time, so the history orders them without clocks.
type historyClient struct {
	r       *historyRun
	id      int
	rng     *rand.Rand
	keys    []*ownedKey
	next    int
	latency map[history.Op]time.Duration // moving average, to aim cancellations
}

func (c *historyClient) loop() {
	for time.Now().Before(c.r.deadline) {
		if len(c.keys) < 6 || c.rng.IntN(10) == 0 {
			c.issue()
			continue
		}
		k := c.keys[c.rng.IntN(len(c.keys))]
		switch c.rng.IntN(9) {
		case 0, 1:
			c.act(k, history.Rotate)
		case 2, 3:
			if k.disabled {
				c.act(k, history.Enable)
			} else {
				c.act(k, history.Disable)
			}
		case 4:
			c.act(k, history.Patch)
		default:
			c.act(k, history.Revoke)
		}
		time.Sleep(time.Duration(c.rng.IntN(20)) * time.Millisecond)
	}
}

func (c *historyClient) issue() {
	name := fmt.Sprintf("c%d-%04d", c.id, c.next)
	c.next++
	m, _ := c.r.timed(history.Mutation{Client: c.id, Op: history.Issue, Name: name, Role: historyRole}, 0,
		func(ctx context.Context) (answer, error) { return c.r.api.Issue(ctx, name, historyRole) })
	if m.Outcome == history.OK {
		c.keys = append(c.keys, &ownedKey{name: name, keyID: m.NewKeyID})
	}
}

// act performs op on k; some requests are cut off at a random point around
// the op's usual latency (a client disconnecting) and then retried once, as a
// client would. A key whose state stays unknown is left alone from then on.
func (c *historyClient) act(k *ownedKey, op history.Op) {
	cut := time.Duration(0)
	if op != history.Rotate && c.rng.IntN(100) < c.r.cfg.CancelPercent {
		avg := max(c.latency[op], time.Millisecond)
		cut = time.Duration(float64(avg) * (0.2 + c.rng.Float64()))
	}
	call := func(ctx context.Context) (answer, error) {
		switch op {
		case history.Rotate:
			return c.r.api.Rotate(ctx, k.name)
		case history.Disable:
			return c.r.api.Disable(ctx, k.name)
		case history.Enable:
			return c.r.api.Enable(ctx, k.name)
		case history.Patch:
			return c.r.api.Patch(ctx, k.name, fmt.Sprintf("patched %d", c.rng.IntN(1000)))
		default:
			return c.r.api.Revoke(ctx, k.keyID)
		}
	}
	base := history.Mutation{Client: c.id, Op: op, Name: k.name, KeyID: k.keyID, Role: historyRole}
	m, _ := c.r.timed(base, cut, call)
	if m.Outcome == history.Unknown && op != history.Rotate { // a second rotation would be a new one
		c.r.rec.fault("client %d cut %s of %s off after %s", c.id, op, k.keyID, cut.Round(time.Microsecond))
		m, _ = c.r.timed(base, 0, call)
	} else if m.Outcome == history.OK {
		c.latency[op] = (3*c.latency[op] + m.Return.Sub(m.Invoke)) / 4
	}
	switch {
	case m.Outcome == history.Unknown:
		c.drop(k)
	case m.Outcome != history.OK:
	case op == history.Revoke:
		c.drop(k)
	case op == history.Rotate:
		k.keyID, k.disabled = m.NewKeyID, false
	case op == history.Disable:
		k.disabled = true
	case op == history.Enable:
		k.disabled = false
	}
}

func (c *historyClient) drop(k *ownedKey) {
	for i, x := range c.keys {
		if x == k {
			c.keys = append(c.keys[:i], c.keys[i+1:]...)
			return
		}
	}
}

// roleLoop narrows and widens the role now and then (one writer: ordered).
func (r *historyRun) roleLoop(rng *rand.Rand) {
	narrow := false
	for time.Now().Before(r.deadline) {
		time.Sleep(time.Duration(800+rng.IntN(1700)) * time.Millisecond)
		narrow = !narrow
		op, perms := history.Widen, widePerms
		if narrow {
			op, perms = history.Narrow, narrowPerms
		}
		r.timed(history.Mutation{Client: 99, Op: op, Role: historyRole}, 0,
			func(ctx context.Context) (answer, error) { return r.api.Downgrade(ctx, historyRole, perms) })
	}
}

// verifyLoop asks random verifiers about random known keys, mostly recent ones.
func (r *historyRun) verifyLoop(rng *rand.Rand) {
	perms := []string{"", "r:read", narrowPerm}
	for time.Now().Before(r.deadline) {
		f := r.fleet[rng.IntN(len(r.fleet))]
		f.mu.Lock()
		stopped := f.stopped
		f.mu.Unlock()
		if stopped {
			continue
		}
		r.rec.mu.Lock()
		n := uint64(len(r.rec.ids))
		r.rec.mu.Unlock()
		if n == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		i := rng.Uint64N(n)
		if rng.IntN(2) == 0 && n > 50 {
			i = n - 1 - rng.Uint64N(50)
		}
		id, ref, _ := r.rec.pick(i)
		v := f.verify(context.Background(), r.rec, id, ref, perms[rng.IntN(len(perms))])
		r.rec.mu.Lock()
		r.rec.h.Verifies = append(r.rec.h.Verifies, v)
		r.rec.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// faultLoop injects the seeded faults; the backlog scenario (defect 3's
// shape) runs first, then random faults until the deadline.
func (r *historyRun) faultLoop(rng *rand.Rand) {
	time.Sleep(2 * time.Second)
	r.cacheRace(rng)
	r.backlog(rng, 0)
	for n := 1; time.Now().Before(r.deadline.Add(-3 * time.Second)); n++ {
		time.Sleep(time.Duration(1000+rng.IntN(1500)) * time.Millisecond)
		f := r.fleet[rng.IntN(len(r.fleet))]
		kinds := []int{0, 1, 2, 3} // the soak adds more backlogs and retention overruns (4), and the target's own (5)
		if r.cfg.Soak {
			kinds = append(kinds, 4)
		}
		if r.target.fault != nil {
			kinds = append(kinds, 5)
		}
		switch kinds[rng.IntN(len(kinds))] {
		case 0:
			d := time.Duration(300+rng.IntN(1500)) * time.Millisecond
			r.rec.fault("SIGSTOP %s for %s", f.name, d)
			f.signal(syscall.SIGSTOP)
			time.Sleep(d)
			f.signal(syscall.SIGCONT)
			r.rec.fault("SIGCONT %s", f.name)
		case 1:
			r.rec.fault("restart %s", f.name)
			f.restart(r.t)
			r.rec.fault("restarted %s", f.name)
		case 2:
			err := r.api.ReloadPlugin(context.Background())
			r.rec.fault("plugin reload (err: %v)", err)
		case 3:
			err := r.api.Tidy(context.Background())
			r.rec.fault("tidy: purge feed entries older than %s (err: %v)", r.cfg.FeedRetention, err)
		case 4:
			switch {
			case rng.IntN(2) == 0:
				r.backlog(rng, n)
			default:
				r.overrun(f)
			}
		case 5:
			r.target.fault(r, rng)
		}
	}
}

// backlog pauses a verifier that has a key cached, publishes more than a page
// of the feed, revokes the key, resumes the verifier and asks it about the key.
func (r *historyRun) backlog(rng *rand.Rand, n int) {
	f := r.fleet[rng.IntN(len(r.fleet))]
	name := fmt.Sprintf("backlog-%d", n)
	m, _ := r.timed(history.Mutation{Client: 100, Op: history.Issue, Name: name, Role: backlogRole}, 0,
		func(ctx context.Context) (answer, error) { return r.api.Issue(ctx, name, backlogRole) })
	if m.Outcome != history.OK {
		r.rec.fault("backlog %d: issue failed: %s", n, m.Err)
		return
	}
	id, ref, _ := r.keyRef(m.NewKeyID)
	ask := func() {
		v := f.verify(context.Background(), r.rec, id, ref, "")
		r.rec.mu.Lock()
		r.rec.h.Verifies = append(r.rec.h.Verifies, v)
		r.rec.mu.Unlock()
	}
	ask() // cached now
	// The backlog is made of patches (cheap: no transit call) of a few keys
	// of the run's own, each patched by one worker.
	const workers = 4
	var floodKeys []string
	for w := 0; w < workers; w++ {
		fname := fmt.Sprintf("flood-%d-%d", n, w)
		m, _ := r.timed(history.Mutation{Client: 200 + w, Op: history.Issue, Name: fname, Role: backlogRole}, 0,
			func(ctx context.Context) (answer, error) { return r.api.Issue(ctx, fname, backlogRole) })
		floodKeys = append(floodKeys, m.NewKeyID)
	}
	r.rec.fault("backlog %d: SIGSTOP %s, then %d patches", n, f.name, r.cfg.Flood)
	f.signal(syscall.SIGSTOP)
	var (
		wg      sync.WaitGroup
		patches atomic.Int64
	)
	stopFlood := time.Now().Add(r.cfg.FloodFor)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			fname := fmt.Sprintf("flood-%d-%d", n, w)
			for i := w; i < r.cfg.Flood && time.Now().Before(stopFlood); i += workers {
				patches.Add(1)
				r.timed(history.Mutation{Client: 200 + w, Op: history.Patch, Name: fname, KeyID: floodKeys[w], Role: backlogRole}, 0,
					func(ctx context.Context) (answer, error) { return r.api.Patch(ctx, fname, fmt.Sprintf("flood %d", i)) })
			}
		}(w)
	}
	wg.Wait()
	r.rec.fault("backlog %d: flood done (%d patches; a feed page holds 1000)", n, patches.Load())
	r.timed(history.Mutation{Client: 100, Op: history.Revoke, Name: name, KeyID: id, Role: backlogRole}, 0,
		func(ctx context.Context) (answer, error) { return r.api.Revoke(ctx, id) })
	f.scrapeEvery.Store(int64(2 * time.Millisecond))
	r.rec.fault("backlog %d: SIGCONT %s", n, f.name)
	f.signal(syscall.SIGCONT)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		ask()
	}
	f.scrapeEvery.Store(int64(scrapeEvery))
}

// cacheRace is defect 2's shape: a lookup that missed the plugin's record
// cache reads the active record; a revocation writes and caches the revoked
// one; then the lookup offers what it read to the cache. The plugin is
// reloaded first (empty caches). Built with failpoints, the lookup waits
// lookupWindow between its read and its offer, so the revocation lands inside
// that window every time; without them the window is a few microseconds.
func (r *historyRun) cacheRace(rng *rand.Rand) {
	f := r.fleet[rng.IntN(len(r.fleet))]
	m, _ := r.timed(history.Mutation{Client: 100, Op: history.Issue, Name: "cache-race", Role: backlogRole}, 0,
		func(ctx context.Context) (answer, error) { return r.api.Issue(ctx, "cache-race", backlogRole) })
	if m.Outcome != history.OK {
		r.rec.fault("cache race: issue failed: %s", m.Err)
		return
	}
	id, ref, _ := r.keyRef(m.NewKeyID)
	ask := func() {
		v := f.verify(context.Background(), r.rec, id, ref, "")
		r.rec.mu.Lock()
		r.rec.h.Verifies = append(r.rec.h.Verifies, v)
		r.rec.mu.Unlock()
	}
	err := r.api.ReloadPlugin(context.Background())
	r.rec.fault("cache race: plugin reload (err: %v); %s looks %s up while it is revoked", err, f.name, id)
	r.setFailpoints(fmt.Sprintf("lookup-after-read=%s", lookupWindow))
	asked := make(chan struct{})
	go func() { defer close(asked); ask() }()
	time.Sleep(lookupWindow / 3)
	r.timed(history.Mutation{Client: 100, Op: history.Revoke, Name: "cache-race", KeyID: id, Role: backlogRole}, 0,
		func(ctx context.Context) (answer, error) { return r.api.Revoke(ctx, id) })
	<-asked
	r.setFailpoints("")
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		ask()
	}
}

// lookupWindow is how long the failpoint holds a lookup between its storage
// read and its cache offer in cacheRace.
const lookupWindow = 300 * time.Millisecond

// setFailpoints switches the plugin's failpoints (a no-op in a build without them).
func (r *historyRun) setFailpoints(spec string) {
	if r.cfg.Failpoints == "" {
		return
	}
	require.NoError(r.t, os.WriteFile(r.cfg.Failpoints, []byte(spec), 0o600))
	r.rec.fault("failpoints: %q", spec)
}

func (r *historyRun) keyRef(id string) (string, keyRef, bool) {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	ref, ok := r.rec.secrets[id]
	return id, ref, ok
}

// overrun pauses a verifier past feed_retention and purges the feed under it:
// on resume its cursor is older than the tail, so it must be told to reset.
func (r *historyRun) overrun(f *fleetVerifier) {
	d := r.cfg.FeedRetention + 5*time.Second
	r.rec.fault("overrun: SIGSTOP %s for %s, then tidy", f.name, d)
	f.signal(syscall.SIGSTOP)
	time.Sleep(d)
	err := r.api.Tidy(context.Background())
	f.signal(syscall.SIGCONT)
	r.rec.fault("overrun: tidy (err: %v), SIGCONT %s", err, f.name)
}
