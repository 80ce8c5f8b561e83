package verifier

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// TestBacklogIsServedByLookupUntilCaughtUp is issue 14's defect 3: a paused
// verifier resumes with a backlog of more than one page, and the revocation of
// a key it has cached is on a later page. Once it has heard a head beyond its
// cursor it must not answer VALID from the cache. On the old code the first
// page made it "fresh" and the cached VALID was served until the last page.
func TestBacklogIsServedByLookupUntilCaughtUp(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, func(c *Config) { c.FeedWait = 20 * time.Millisecond })
	req := Request{Key: key}
	require.Equal(t, CodeValid, check(t, v, req))
	require.Equal(t, CodeValid, check(t, v, req))

	f.holdFeed() // the verifier is paused
	f.publishNoise(fakeFeedPage + 500)
	revokedAt := f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	f.publishNoise(10)

	f.stepFeed() // it resumes and reads the first page only
	require.Greater(t, v.follower.heard.Load(), v.follower.Cursor(), "it has heard a head beyond its cursor")
	require.Less(t, v.follower.Cursor(), revokedAt, "the revocation is not applied yet")
	lookups := len(f.lookupCalls())
	assert.Equal(t, CodeRevoked, check(t, v, req), "no VALID from the cache while behind")
	assert.Greater(t, len(f.lookupCalls()), lookups, "answered by lookup")
	st := v.Status()
	assert.Equal(t, "catching_up", st.State)
	assert.True(t, st.Ready, "ready while catching up (DESIGN §6)")

	f.releaseFeed()
	require.Eventually(t, func() bool { return v.follower.Cursor() == revokedAt+10 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, CodeRevoked, check(t, v, req))
	assert.Equal(t, "ready", v.Status().State)
}

// A check answers at the feed position it read (its cursor, the audit line's
// feed_seq), so it must not answer from a lookup read before that position.
// Its two reads of the follower can straddle an apply: the head it heard read
// before the apply stores the new head, the cursor after it. The lookup was
// bounded by that older head, so a coalesced lookup read before a revocation
// answered VALID at a feed_seq past the revocation. Emulated here with the
// feed held, a follower whose heard head is behind its cursor (as the check's
// two reads saw it) and lookups answering the key as it was before.
func TestCheckNeverAnswersFromALookupBehindItsCursor(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, func(c *Config) { c.FeedWait = 20 * time.Millisecond })
	f.holdFeed()
	f.mu.Lock()
	before := *f.entries[id]
	before.Seq = f.head
	f.past = &wire.Batch{Entries: []wire.Entry{before}, Seq: f.head}
	f.mu.Unlock()
	revokedAt := f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	v.follower.heard.Store(revokedAt - 1)
	v.follower.cursor.Store(revokedAt)

	verdict, err := v.Check(context.Background(), Request{Key: key, ClientIP: localhost})
	assert.NotEqual(t, CodeValid, verdict.Code, "VALID at feed_seq %d, from a lookup read at %d", verdict.FeedSeq, revokedAt-1)
	assert.ErrorIs(t, err, ErrUnavailable, "asked again, the lookup is still behind the cursor: no answer")
	assert.GreaterOrEqual(t, len(f.lookupCalls()), 2, "the key was looked up again")
	f.releaseFeed()
}

// TestFreshVerifierStartsAtTheHead: a new verifier has nothing cached, so it
// reads the head and serves by lookup instead of replaying the retained feed
// page by page from after=0.
func TestFreshVerifierStartsAtTheHead(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	f.publishNoise(2*fakeFeedPage + 10)
	v, _ := startVerifier(t, f, nil)
	assert.Equal(t, f.head, v.follower.Cursor(), "the first poll put the cursor at the head")
	assert.False(t, v.follower.behind())
	assert.Equal(t, CodeValid, check(t, v, Request{Key: key}))
	f.mu.Lock()
	polls := f.polls
	f.mu.Unlock()
	assert.LessOrEqual(t, polls, 2, "no replay of the retained history")
}

// TestRestoredFeedIsNoticedByEntryID is defect 11: the mount is restored (or
// recreated) with a head at the verifier's cursor, so seqs alone cannot tell.
// The verifier sends the id of the entry at its cursor; the plugin answers a
// reset, and the verifier drops every cached verdict. On the old code no
// after_id was sent and the cached VALID stayed forever.
func TestRestoredFeedIsNoticedByEntryID(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	_, _ = f.issue("other", "ops", keyOpts{})
	v, _ := startVerifier(t, f, func(c *Config) { c.FeedWait = 20 * time.Millisecond })
	req := Request{Key: key}
	require.Equal(t, CodeValid, check(t, v, req))
	_, _ = f.issue("third", "ops", keyOpts{}) // an entry whose id the verifier learns
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return v.follower.Cursor() == f.head && f.afterID == f.changes[len(f.changes)-1].ID
	}, 5*time.Second, time.Millisecond, "the verifier sends the id of the entry at its cursor")

	// Storage restored from a backup in which the key was revoked: another
	// history of the same length, and no new entry for the verifier to see.
	f.mu.Lock()
	f.entries[id].Status = wire.StatusRevoked
	f.mu.Unlock()
	f.restore()
	eventually(t, v, req, CodeRevoked)
}

// TestReadiness is DESIGN §6 (defect 15): not ready before the first feed
// sync nor after the stale window; ready inside it.
func TestReadiness(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	f.setDown(true)
	const window = 300 * time.Millisecond
	v, err := New(Config{VaultAddrs: []string{f.srv.URL}, VaultToken: f.token, StaleIfError: window, FeedWait: 20 * time.Millisecond})
	require.NoError(t, err)
	h := v.Handler()
	ready := func() int {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code
	}
	assert.Equal(t, http.StatusServiceUnavailable, ready(), "before the first feed sync")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = v.Close() })
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, http.StatusServiceUnavailable, ready(), "Vault never reached")

	f.setDown(false)
	require.Eventually(t, func() bool { return ready() == http.StatusOK }, 5*time.Second, time.Millisecond)
	f.setDown(true)
	require.Eventually(t, func() bool { return v.Status().State == "stale" }, 5*time.Second, time.Millisecond)
	downAt := time.Now()
	code := ready()
	if time.Since(downAt) < window/2 { // inside the window, however slow the machine
		assert.Equal(t, http.StatusOK, code, "ready inside the stale window")
	}
	require.Eventually(t, func() bool { return ready() == http.StatusServiceUnavailable }, 5*time.Second, time.Millisecond,
		"not ready once the stale window ran out")
}

// TestMaxAgeRefreshesInTheBackground: a change the feed never carried (the
// backstop case) reaches the cache within max-age, by a background refresh
// and not by a request.
func TestMaxAgeRefreshesInTheBackground(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	const maxAge = 400 * time.Millisecond
	v, _ := startVerifier(t, f, func(c *Config) { c.MaxAge = maxAge })
	req := Request{Key: key}
	require.Equal(t, CodeValid, check(t, v, req))
	f.mu.Lock()
	f.entries[id].Status = wire.StatusRevoked // unpublished
	f.mu.Unlock()
	lookups := len(f.lookupCalls())
	require.Eventually(t, func() bool {
		r := v.cache.Get(id)
		return r != nil && r.status == statusRevoked
	}, 10*maxAge, time.Millisecond, "the refresh replaced the cached key")
	assert.Greater(t, len(f.lookupCalls()), lookups)
	assert.Equal(t, CodeRevoked, check(t, v, req))
}

// TestPastMaxAgeIsAnsweredByLookup: a record past max-age that the refresh
// has not replaced yet is not answered from the cache.
func TestPastMaxAgeIsAnsweredByLookup(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, nil) // default max-age: no refresh during the test
	req := Request{Key: key}
	require.Equal(t, CodeValid, check(t, v, req))
	f.mu.Lock()
	f.entries[id].Status = wire.StatusDisabled // unpublished
	f.mu.Unlock()
	require.Equal(t, CodeValid, check(t, v, req), "from the cache while young")
	r := v.cache.Get(id)
	require.NotNil(t, r)
	r.loaded = time.Now().Add(-DefaultMaxAge - time.Second).UnixNano() // as if loaded long ago
	assert.Equal(t, CodeDisabled, check(t, v, req), "past max-age: looked up")
}

// TestAuditLineCarriesFeedSeq: every audit line names the feed position the
// verifier had applied when it answered.
func TestAuditLineCarriesFeedSeq(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	path := filepath.Join(t.TempDir(), "audit.log")
	v, _ := startVerifier(t, f, func(c *Config) { c.AuditLog = path })
	h := v.Handler()
	body := jsonBody(t, map[string]any{"key": key})
	postVerify(t, h, body)
	before := v.follower.Cursor()
	seq := f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	require.Eventually(t, func() bool { return v.follower.Cursor() >= seq }, 5*time.Second, time.Millisecond)
	postVerify(t, h, body)
	verdict, err := v.Check(context.Background(), Request{Key: key, ClientIP: localhost})
	require.NoError(t, err)
	assert.Equal(t, seq, verdict.FeedSeq)

	require.NoError(t, v.audit.Flush())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 2)
	var first, second struct {
		Code    string  `json:"code"`
		FeedSeq *uint64 `json:"feed_seq"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	require.NotNil(t, first.FeedSeq)
	require.NotNil(t, second.FeedSeq)
	assert.Equal(t, "VALID", first.Code)
	assert.Equal(t, before, *first.FeedSeq)
	assert.Less(t, *first.FeedSeq, seq, "VALID before the revocation")
	assert.Equal(t, "REVOKED", second.Code)
	assert.Equal(t, seq, *second.FeedSeq)
}

// TestRequestJoiningAnOlderLookupIsNotAnsweredByIt: a lookup reads the key as
// active, the revocation is committed and applied from the feed, and only then
// does a second request for the key arrive and join the lookup still in
// flight. The first request may answer VALID (it started before the
// revocation); the second must not (the verifier had applied the revocation
// before it asked). On the old code both got the lookup's VALID.
func TestRequestJoiningAnOlderLookupIsNotAnsweredByIt(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, nil)
	inLookup, release := make(chan struct{}), make(chan struct{})
	f.setLookupHook(func([]string) { close(inLookup); <-release })
	first := make(chan Code, 1)
	go func() { first <- check(t, v, Request{Key: key}) }()
	<-inLookup
	f.setLookupHook(nil)
	seq := f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	require.Eventually(t, func() bool { return v.follower.Cursor() >= seq }, 5*time.Second, time.Millisecond)
	second := make(chan Code, 1)
	go func() { second <- check(t, v, Request{Key: key}) }()
	time.Sleep(20 * time.Millisecond) // let it join the flight; without that it is a fresh lookup and passes anyway
	close(release)
	assert.Equal(t, CodeValid, <-first, "the first request started before the revocation")
	assert.Equal(t, CodeRevoked, <-second, "the second asked after the revocation was applied")
}
