package verifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"

	"github.com/vault-apikeys/vault-apikeys/token"
)

// Verifier answers verification requests. Create it with New, start its
// background work with Run, and ask it with Check or over HTTP with Handler.
type Verifier struct {
	cfg     Config
	log     hclog.Logger
	vault   *vaultAPI
	login   *login
	cache   *cache
	keys    *keyring
	loader  *loader
	misses  singleflight.Group
	feed    *feed
	usage   *reporter
	audit   *audit
	metrics *metrics
	now     func() time.Time

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
	v.feed = &feed{vault: v.vault, cache: v.cache, wait: cfg.FeedWait, timeout: cfg.VaultTimeout, ready: make(chan struct{}),
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
	wg.Go(func() { v.feed.Run(ctx) })
	wg.Go(func() { v.usage.Run(ctx, v.cfg.UsageFlush) })
	wg.Wait()
	return nil
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
	if st == stateUnavailable && v.feed.lastOK.Load() == 0 {
		// Never reached Vault yet (just started): wait for the first feed poll,
		// bounded by the Vault timeout, rather than failing a request that
		// arrives a few milliseconds early.
		v.feed.awaitFirst(ctx, v.cfg.VaultTimeout)
		now = v.now()
		st = v.stateAt(now)
	}
	switch st {
	case stateUnavailable:
		v.metrics.unavailable.Inc()
		return Verdict{}, ErrUnavailable
	case stateStale:
		v.metrics.staleServed.Inc()
	}
	tok, err := token.Parse(req.Key)
	if err != nil {
		v.metrics.decisions[CodeInvalidFormat].Inc()
		return Verdict{Code: CodeInvalidFormat}, nil
	}
	d := tok.Digest()
	rec := v.cache.Get(tok.KeyID, &d)
	if rec != nil {
		v.metrics.cacheHits.Inc()
	} else {
		v.metrics.cacheMisses.Inc()
		if rec, err = v.miss(ctx, tok.KeyID); err != nil {
			v.metrics.unavailable.Inc()
			return Verdict{}, err
		}
	}
	verdict := rec.decide(&d, &req, now)
	if verdict.Code == CodeValid {
		v.usage.Record(rec.entry.KeyID, req.ClientIP, now.UnixNano())
	}
	v.metrics.decisions[verdict.Code].Inc()
	return verdict, nil
}

// miss loads keyID once however many requests wait for it. The lookup runs on
// its own deadline, so one caller giving up does not fail the others.
func (v *Verifier) miss(ctx context.Context, keyID string) (*record, error) {
	ch := v.misses.DoChan(keyID, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.Background(), 2*v.cfg.VaultTimeout)
		defer cancel()
		return v.loader.load(lctx, keyID)
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			if !errors.Is(res.Err, ErrUnavailable) {
				v.log.Warn("lookup failed: answering 503", "key_id", keyID, "error", res.Err)
				return nil, fmt.Errorf("%w: %v", ErrUnavailable, res.Err)
			}
			return nil, res.Err
		}
		return res.Val.(*record), nil
	}
}

type state int

const (
	stateReady       state = iota // following the feed
	stateStale                    // feed failing, cached verdicts still within stale-if-error
	stateUnavailable              // never reached, or stale-if-error ran out: 503 for everything
)

func (s state) String() string {
	return [...]string{"ready", "stale", "unavailable"}[s]
}

func (v *Verifier) state() state { return v.stateAt(v.now()) }

func (v *Verifier) stateAt(now time.Time) state {
	last := v.feed.lastOK.Load()
	if last == 0 || now.UnixNano()-last > int64(v.cfg.StaleIfError) {
		return stateUnavailable
	}
	if v.feed.failing.Load() {
		return stateStale
	}
	return stateReady
}

// sinceContact is the time since the last successful feed poll, or -1.
func (v *Verifier) sinceContact() time.Duration {
	last := v.feed.lastOK.Load()
	if last == 0 {
		return -1
	}
	return v.now().Sub(time.Unix(0, last))
}

// Status describes readiness, as /readyz reports it.
type Status struct {
	Ready bool `json:"ready"`
	// State is "ready", "stale" (feed failing, cached verdicts still served) or
	// "unavailable" (every answer is 503).
	State string `json:"state"`
	// LastContact is when the feed was last read successfully.
	LastContact *time.Time `json:"last_contact,omitempty"`
	FeedCursor  uint64     `json:"feed_cursor"`
	CacheSize   int        `json:"cache_entries"`
}

// Status reports whether the Verifier follows the feed.
func (v *Verifier) Status() Status {
	s := v.state()
	st := Status{Ready: s == stateReady, State: s.String(), FeedCursor: v.feed.Cursor(), CacheSize: v.cache.Len()}
	if last := v.feed.lastOK.Load(); last != 0 {
		t := time.Unix(0, last).UTC()
		st.LastContact = &t
	}
	return st
}
