package verifier

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"

	"github.com/vault-apikeys/vault-apikeys/token"
)

// Verifier answers verification requests. Create it with New, start its
// background work with Run, and ask it with Check or over HTTP with Handler.
type Verifier struct {
	cfg      Config
	log      hclog.Logger
	vault    *vaultAPI
	login    *login
	cache    *cache
	keys     *keyring
	loader   *loader
	misses   singleflight.Group
	follower *follower
	usage    *reporter
	audit    *audit
	metrics  *metrics
	now      func() time.Time

	runMu   sync.Mutex
	running bool
}

// New checks cfg and builds a Verifier. It does not contact Vault: Run does.
func New(cfg Config) (*Verifier, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("verifier configuration: %w", err)
	}
	v := &Verifier{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), now: time.Now}
	var err error
	if v.vault, err = newVaultAPI(&v.cfg, v.metrics); err != nil {
		return nil, err
	}
	if v.audit, err = openAudit(cfg.AuditLog); err != nil {
		return nil, err
	}
	v.login = newLogin(&v.cfg, v.vault, v.log.Named("login"))
	v.vault.denied = v.login.Kick
	v.cache = newCache(cfg.CacheSize)
	v.keys = newKeyring(cfg.DEKCacheSize, v.vault)
	v.loader = newLoader(v.vault, v.keys, v.cache, v.log.Named("lookup"), cfg.VaultTimeout, cfg.MaxInFlight,
		func(n int) { v.metrics.lookupBatch.Observe(float64(n)) })
	v.follower = &follower{vault: v.vault, cache: v.cache, wait: cfg.FeedWait, timeout: cfg.VaultTimeout, ready: make(chan struct{}),
		log: v.log.Named("feed"), metrics: v.metrics, now: time.Now}
	v.usage = newReporter(v.vault.ReportUsage, cfg.UsageMaxKeys, v.log.Named("usage"),
		v.metrics.usageDropped.Inc, 2*cfg.VaultTimeout)
	v.metrics.gauges(v)
	return v, nil
}

// Run logs in to Vault, follows the change feed and reports usage until ctx is
// done; then it sends the last usage report and returns. Until the first feed
// poll succeeds every answer is ErrUnavailable.
func (v *Verifier) Run(ctx context.Context) error {
	v.runMu.Lock()
	if v.running {
		v.runMu.Unlock()
		return errors.New("verifier is already running")
	}
	v.running = true
	v.runMu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { v.login.Run(ctx) })
	// The feed and the usage reporter need a token: wait for the first login.
	if err := v.login.Wait(ctx); err != nil {
		wg.Wait()
		return nil
	}
	wg.Go(func() { v.follower.Run(ctx) })
	wg.Go(func() { v.usage.Run(ctx, v.cfg.UsageFlush) })
	wg.Go(func() { v.refresh(ctx) })
	wg.Wait()
	return nil
}

// refresh looks up again, in the background and in batches, every cached
// record that has reached 3/4 of MaxAge, so a record in use is normally
// refreshed before a request finds it too old (and then has to look it up);
// revoked keys are final, so they are not refreshed but dropped at MaxAge.
func (v *Verifier) refresh(ctx context.Context) {
	t := time.NewTicker(max(v.cfg.MaxAge/8, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if v.state() == stateUnavailable {
			continue
		}
		now := v.now()
		ids, _ := v.cache.sweep(now.Add(-v.cfg.MaxAge*3/4).UnixNano(), now.Add(-v.cfg.MaxAge).UnixNano())
		v.loader.refresh(ctx, ids)
	}
}

// Close releases the audit log. Call it after Run has returned.
func (v *Verifier) Close() error {
	return v.audit.Close()
}

// ReopenAudit reopens the audit file (after rotation; cmd calls it on SIGHUP).
func (v *Verifier) ReopenAudit() error {
	return v.audit.Reopen()
}

// Check decides req. An error (always wrapping ErrUnavailable) means the
// Verifier cannot decide and the caller must fail closed. A cache hit does not
// allocate.
func (v *Verifier) Check(ctx context.Context, req Request) (Verdict, error) {
	now := v.now()
	st := v.stateAt(now)
	if st == stateUnavailable && v.follower.lastOK.Load() == 0 {
		// Never reached Vault yet (just started): wait for the first feed poll,
		// bounded by the Vault timeout, rather than failing a request that
		// arrives a few milliseconds early.
		v.follower.awaitFirst(ctx, v.cfg.VaultTimeout)
		now = v.now()
		st = v.stateAt(now)
	}
	// heard before seq: a cursor at or past the head heard means every change
	// up to that head has been applied (and its evictions with it).
	heard := v.follower.heard.Load()
	seq := v.follower.cursor.Load()
	switch st {
	case stateUnavailable:
		v.metrics.unavailable.Inc()
		return Verdict{FeedSeq: seq}, ErrUnavailable
	case stateStale:
		v.metrics.staleServed.Inc()
	}
	tok, err := token.Parse(req.Key)
	if err != nil {
		v.metrics.decisions[CodeInvalidFormat].Inc()
		return Verdict{Code: CodeInvalidFormat, FeedSeq: seq}, nil
	}
	d := tok.Digest()
	var rec *cachedKey
	// Behind the feed (heard > seq) the cache cannot be vouched for: every
	// answer is a lookup until the cursor reaches the head heard.
	if heard <= seq {
		rec = v.cache.Get(tok.KeyID)
		if rec != nil && now.UnixNano()-rec.loaded > int64(v.cfg.MaxAge) {
			rec = nil // past -max-age and not refreshed yet
		}
	}
	if rec != nil {
		v.metrics.cacheHits.Inc()
	} else {
		v.metrics.cacheMisses.Inc()
		// The answer must be read at or past both: the head heard and the
		// cursor this check answers at. The two loads above can straddle an
		// apply (heard read before it stored a new head, the cursor after), so
		// the cursor may be the later of the two.
		if rec, err = v.lookup(ctx, tok.KeyID, req.ClientIP, max(heard, seq)); err != nil {
			v.metrics.unavailable.Inc()
			return Verdict{FeedSeq: seq}, err
		}
	}
	verdict := rec.decide(&d, &req, now)
	verdict.FeedSeq = seq
	if verdict.Code == CodeValid {
		v.usage.Record(rec.keyID, req.ClientIP, now.UnixNano())
	}
	v.metrics.decisions[verdict.Code].Inc()
	return verdict, nil
}

// lookup answers keyID from Vault for a request that needs an answer read at
// feed position atLeast or later. A coalesced lookup may have read Vault
// before that position (it started before the request): its answer could
// predate a change this verifier already knows of, so it is asked again once,
// and never used.
func (v *Verifier) lookup(ctx context.Context, keyID string, from netip.Addr, atLeast uint64) (*cachedKey, error) {
	ans, err := v.miss(ctx, keyID, from)
	if err == nil && ans.seq < atLeast {
		ans, err = v.miss(ctx, keyID, from)
		if err == nil && ans.seq < atLeast {
			return nil, fmt.Errorf("%w: lookup of key %s answered at seq %d, before the feed position %d", ErrUnavailable, keyID, ans.seq, atLeast)
		}
	}
	return ans.rec, err
}

// miss loads keyID once however many requests wait for it. The lookup runs on
// its own deadline, so one caller giving up does not fail the others.
func (v *Verifier) miss(ctx context.Context, keyID string, from netip.Addr) (answer, error) {
	low := v.loader.flood.suspect(from)
	ch := v.misses.DoChan(keyID, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.Background(), 2*v.cfg.VaultTimeout)
		defer cancel()
		return v.loader.load(lctx, keyID, low)
	})
	select {
	case <-ctx.Done():
		return answer{}, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			if !errors.Is(res.Err, ErrUnavailable) {
				v.log.Warn("lookup failed: answering 503", "key_id", keyID, "error", res.Err)
				return answer{}, fmt.Errorf("%w: %v", ErrUnavailable, res.Err)
			}
			return answer{}, res.Err
		}
		ans := res.Val.(answer)
		if ans.rec.status == statusNotFound {
			v.loader.flood.notFound(from)
		}
		return ans, nil
	}
}

type state int

const (
	stateReady       state = iota // following the feed
	stateStale                    // feed failing, cached verdicts still within stale-if-error
	stateUnavailable              // never reached, or stale-if-error ran out: 503 for everything
	stateCatchingUp               // behind the feed head: answering by lookup until caught up
)

func (s state) String() string {
	return [...]string{"ready", "stale", "unavailable", "catching_up"}[s]
}

func (v *Verifier) state() state { return v.stateAt(v.now()) }

func (v *Verifier) stateAt(now time.Time) state {
	last := v.follower.lastOK.Load()
	if last == 0 || now.UnixNano()-last > int64(v.cfg.StaleIfError) {
		return stateUnavailable
	}
	if v.follower.failing.Load() {
		return stateStale
	}
	if v.follower.behind() {
		return stateCatchingUp
	}
	return stateReady
}

// sinceContact is the time since the last successful feed poll, or -1.
func (v *Verifier) sinceContact() time.Duration {
	last := v.follower.lastOK.Load()
	if last == 0 {
		return -1
	}
	return v.now().Sub(time.Unix(0, last))
}

// Status describes readiness, as /readyz reports it.
type Status struct {
	// Ready is true when the Verifier can decide (DESIGN §6): after its first
	// feed sync and within stale-if-error of the last successful poll, so a
	// Vault blip does not take every replica out of a load balancer at once.
	Ready bool `json:"ready"`
	// State is "ready", "catching_up" (behind the feed head: answering by
	// lookup, not from the cache), "stale" (feed failing, cached verdicts
	// still served) or "unavailable" (every answer is 503).
	State string `json:"state"`
	// LastContact is when the feed was last read successfully.
	LastContact *time.Time `json:"last_contact,omitempty"`
	FeedCursor  uint64     `json:"feed_cursor"`
	// FeedHead is the newest feed head Vault answered; beyond FeedCursor, the
	// Verifier is catching up.
	FeedHead  uint64 `json:"feed_head"`
	CacheSize int    `json:"cache_entries"`
}

// Status reports whether the Verifier follows the feed.
func (v *Verifier) Status() Status {
	s := v.state()
	st := Status{Ready: s != stateUnavailable, State: s.String(), FeedCursor: v.follower.Cursor(), FeedHead: v.follower.heard.Load(), CacheSize: v.cache.Len()}
	if last := v.follower.lastOK.Load(); last != 0 {
		t := time.Unix(0, last).UTC()
		st.LastContact = &t
	}
	return st
}
