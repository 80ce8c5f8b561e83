package verifier

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

var localhost = netip.MustParseAddr("127.0.0.1")

// startVerifier runs a Verifier against f until the test ends (or stop is
// called) and waits until it follows the feed.
// lookupRacing sends req while its lookup is held open, makes change (which
// returns its feed seq) and lets the follower apply it, then lets the lookup
// answer: an answer from before the change, which must not be cached.
func lookupRacing(t *testing.T, f *fakeVault, v *Verifier, req Request, change func() uint64) {
	t.Helper()
	inLookup, release := make(chan struct{}), make(chan struct{})
	f.setLookupHook(func([]string) { close(inLookup); <-release })
	done := make(chan struct{})
	go func() { check(t, v, req); close(done) }()
	<-inLookup
	f.setLookupHook(nil)
	seq := change()
	require.Eventually(t, func() bool { return v.follower.Cursor() >= seq }, 2*time.Second, time.Millisecond)
	close(release)
	<-done
}

func startVerifier(t testing.TB, f *fakeVault, tweak func(*Config)) (*Verifier, func()) {
	t.Helper()
	cfg := Config{VaultAddrs: []string{f.srv.URL}, VaultToken: f.token, Logger: hclog.NewNullLogger()}
	if tweak != nil {
		tweak(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			_ = v.Close()
		})
	}
	t.Cleanup(stop)
	require.Eventually(t, func() bool { return v.Status().Ready }, 5*time.Second, 2*time.Millisecond, "verifier never followed the feed")
	return v, stop
}

func check(t testing.TB, v *Verifier, req Request) Code {
	t.Helper()
	if !req.ClientIP.IsValid() {
		req.ClientIP = localhost
	}
	verdict, err := v.Check(context.Background(), req)
	require.NoError(t, err)
	return verdict.Code
}

// eventually waits (briefly) for key to answer want.
func eventually(t testing.TB, v *Verifier, req Request, want Code) {
	t.Helper()
	require.Eventually(t, func() bool { return check(t, v, req) == want }, 2*time.Second, time.Millisecond, "never answered %s", want)
}

func opsRole(f *fakeVault) {
	f.role("ops", []string{"clusters:read", "nodes:*"}, []string{"prod", "dev-*"}, []string{"127.0.0.0/8", "10.0.0.0/8"})
}

func TestCheckEveryCode(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	prod, _ := f.issue("prod", "ops", keyOpts{workspace: "prod", metadata: map[string]string{"team": "sre"}})
	wide, _ := f.issue("wide", "ops", keyOpts{})
	// Pinned to a workspace the role (narrowed since) no longer allows.
	unpinned, _ := f.issue("unpinned", "ops", keyOpts{workspace: "staging"})
	narrow, _ := f.issue("narrow", "ops", keyOpts{cidrs: []string{"10.1.0.0/16"}})
	past := time.Now().Add(-time.Minute)
	expired, _ := f.issue("expired", "ops", keyOpts{expires: &past})
	disabled, disabledID := f.issue("disabled", "ops", keyOpts{})
	f.setStatus(disabledID, wire.StatusDisabled, wire.OpDisabled)
	revoked, revokedID := f.issue("revoked", "ops", keyOpts{})
	f.setStatus(revokedID, wire.StatusRevoked, wire.OpRevoked)
	markedExpired, markedID := f.issue("marked", "ops", keyOpts{})
	f.setStatus(markedID, wire.StatusExpired, wire.OpExpired)
	unknown, err := token.Generate("vak")
	require.NoError(t, err)
	forged := forge(t, prod)
	v, _ := startVerifier(t, f, nil)

	for _, tc := range []struct {
		name string
		req  Request
		want Code
	}{
		{"valid", Request{Key: prod}, CodeValid},
		{"valid with workspace and permission", Request{Key: prod, Workspace: "prod", Permissions: []string{"clusters:read"}}, CodeValid},
		{"valid resource wildcard", Request{Key: prod, Permissions: []string{"nodes:drain"}}, CodeValid},
		{"tenant-wide key in a role workspace", Request{Key: wide, Workspace: "dev-eu"}, CodeValid},
		{"tenant-wide key outside the role's workspaces", Request{Key: wide, Workspace: "staging"}, CodeWorkspaceMismatch},
		{"bound key in another workspace", Request{Key: prod, Workspace: "dev-eu"}, CodeWorkspaceMismatch},
		{"bound key whose workspace the role dropped, none asked", Request{Key: unpinned}, CodeWorkspaceMismatch},
		{"permission not granted", Request{Key: prod, Permissions: []string{"clusters:read", "clusters:delete"}}, CodeInsufficientPermissions},
		{"address outside the role's CIDRs", Request{Key: prod, ClientIP: netip.MustParseAddr("192.0.2.7")}, CodeIPNotAllowed},
		{"address outside the key's CIDRs", Request{Key: narrow, ClientIP: netip.MustParseAddr("10.2.0.1")}, CodeIPNotAllowed},
		{"address inside both lists", Request{Key: narrow, ClientIP: netip.MustParseAddr("10.1.2.3")}, CodeValid},
		{"IPv4-mapped address", Request{Key: narrow, ClientIP: netip.MustParseAddr("::ffff:10.1.2.3")}, CodeValid},
		{"expired by its expires_at", Request{Key: expired}, CodeExpired},
		{"expired by the plugin", Request{Key: markedExpired}, CodeExpired},
		{"disabled", Request{Key: disabled}, CodeDisabled},
		{"revoked", Request{Key: revoked}, CodeRevoked},
		{"unknown key_id", Request{Key: unknown.String()}, CodeNotFound},
		{"forged secret for a real key_id", Request{Key: forged}, CodeNotFound},
		{"bad checksum", Request{Key: prod[:len(prod)-6] + "AAAAAA"}, CodeInvalidFormat},
		{"junk", Request{Key: "hello"}, CodeInvalidFormat},
		{"empty", Request{Key: ""}, CodeInvalidFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the first answer may come from Vault, the second from the cache.
			assert.Equal(t, tc.want, check(t, v, tc.req), "first answer")
			assert.Equal(t, tc.want, check(t, v, tc.req), "cached answer")
		})
	}

	t.Run("valid verdict describes the key", func(t *testing.T) {
		verdict, err := v.Check(context.Background(), Request{Key: prod, ClientIP: localhost})
		require.NoError(t, err)
		assert.Equal(t, "prod", verdict.Name)
		assert.Equal(t, "ops", verdict.Role)
		assert.Equal(t, "prod", verdict.Workspace)
		assert.Equal(t, map[string]string{"team": "sre"}, verdict.Metadata)
	})
	t.Run("forged secret learns nothing", func(t *testing.T) {
		verdict, err := v.Check(context.Background(), Request{Key: forged, ClientIP: localhost})
		require.NoError(t, err)
		assert.Empty(t, verdict.Name)
		assert.Empty(t, verdict.Role)
		assert.Nil(t, verdict.Metadata)
	})
	t.Run("forged secret for a revoked key is NOT_FOUND", func(t *testing.T) {
		assert.Equal(t, CodeNotFound, check(t, v, Request{Key: forge(t, revoked)}))
	})
}

// forge returns a well-formed token with key's key_id and another secret.
func forge(t testing.TB, key string) string {
	t.Helper()
	real, err := token.Parse(key)
	require.NoError(t, err)
	other, err := token.Generate(real.Prefix)
	require.NoError(t, err)
	other.KeyID = real.KeyID
	return other.String()
}

func TestFeedEvictsOnEveryChange(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, Permissions: []string{"clusters:read"}}
	require.Equal(t, CodeValid, check(t, v, req))

	f.setStatus(id, wire.StatusDisabled, wire.OpDisabled)
	eventually(t, v, req, CodeDisabled)
	f.setStatus(id, wire.StatusActive, wire.OpEnabled)
	eventually(t, v, req, CodeValid)
	f.downgrade("ops", []string{"nodes:read"})
	eventually(t, v, req, CodeInsufficientPermissions)
	f.downgrade("ops", []string{"clusters:read"})
	eventually(t, v, req, CodeValid)
	f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	eventually(t, v, req, CodeRevoked)
}

func TestRevocationReachesHotKeyWithoutPolling(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	// With the longest poll, a verifier that only saw the change at the poll's
	// end would take 5 s; the parked poll must return on the change instead.
	v, _ := startVerifier(t, f, func(c *Config) { c.FeedWait = MaxFeedWait })
	for range 5 {
		require.Equal(t, CodeValid, check(t, v, Request{Key: key}))
	}
	seq := f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	require.Eventually(t, func() bool { return v.follower.Cursor() >= seq }, MaxFeedWait-time.Second, time.Millisecond,
		"the long-poll returns on a change, not at the end of its wait")
	lookups := len(f.lookupCalls())
	assert.Equal(t, CodeRevoked, check(t, v, Request{Key: key}))
	assert.Equal(t, lookups, len(f.lookupCalls()), "the feed entry is the answer: a revocation is final, so no lookup is waited for")
	other, err := token.Parse(key)
	require.NoError(t, err)
	other.Secret = strings.Repeat("x", token.SecretLen)
	assert.Equal(t, CodeNotFound, check(t, v, Request{Key: other.String()}), "a wrong secret still proves nothing")
}

func TestNegativeAnswerEvictedWhenKeyCreated(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	v, _ := startVerifier(t, f, nil)
	tok, err := token.Generate("vak")
	require.NoError(t, err)
	req := Request{Key: tok.String()}
	require.Equal(t, CodeNotFound, check(t, v, req))
	require.Equal(t, CodeNotFound, check(t, v, req))
	assert.Len(t, f.lookupCalls(), 1, "the second NOT_FOUND comes from the cache")
	f.issueAs(tok, "late", "ops", keyOpts{})
	eventually(t, v, req, CodeValid)
}

// TestLookupRacingRevocationIsNotCached forces the race of DESIGN §6: a lookup
// reads the record, a revocation is committed and reaches the verifier through
// the feed, and only then does the lookup's (stale, VALID) answer arrive. It
// must not be cached. Without the seq check in cache.Insert the final check
// answers VALID from the cache and the test fails.
func TestLookupRacingRevocationIsNotCached(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, nil)

	inLookup := make(chan struct{})
	release := make(chan struct{})
	f.setLookupHook(func([]string) {
		close(inLookup)
		<-release
	})
	type answer struct {
		verdict Verdict
		err     error
	}
	first := make(chan answer, 1)
	go func() {
		verdict, err := v.Check(context.Background(), Request{Key: key, ClientIP: localhost})
		first <- answer{verdict, err}
	}()
	<-inLookup // the lookup has read head and record: the key is active
	f.setLookupHook(nil)
	seq := f.setStatus(id, wire.StatusRevoked, wire.OpRevoked)
	require.Eventually(t, func() bool { return v.follower.Cursor() >= seq }, 2*time.Second, time.Millisecond,
		"the feed must apply the revocation before the lookup answers")
	close(release)

	a := <-first
	require.NoError(t, a.err)
	assert.Equal(t, CodeValid, a.verdict.Code, "the racing request itself saw the key before the revocation")
	before := len(f.lookupCalls())
	assert.Equal(t, CodeRevoked, check(t, v, Request{Key: key}), "the stale VALID must not have been cached")
	assert.Equal(t, before+1, len(f.lookupCalls()), "the answer came from a fresh lookup")
}

func TestRoleChangeRacingLookupIsNotCached(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, Permissions: []string{"clusters:read"}}

	lookupRacing(t, f, v, req, func() uint64 { return f.downgrade("ops", []string{"nodes:read"}) })
	assert.Equal(t, CodeInsufficientPermissions, check(t, v, req))
}

func TestFeedResetFlushesCache(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, func(c *Config) { c.FeedWait = 50 * time.Millisecond })
	require.Equal(t, CodeValid, check(t, v, Request{Key: key}))
	require.Equal(t, 1, v.cache.Len())
	// The verifier falls behind retention: history is purged, then a change it
	// never sees is made.
	f.setDown(true)
	f.mu.Lock()
	f.publish(wire.Change{Role: "other", Op: wire.OpRoleUpdated})
	f.mu.Unlock()
	f.purge()
	f.setDown(false)
	require.Eventually(t, func() bool { return v.cache.Len() == 0 }, 3*time.Second, 5*time.Millisecond, "reset must flush")
	assert.Equal(t, CodeValid, check(t, v, Request{Key: key}))
}

func TestStaleIfErrorThenFailClosedThenRecover(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	cold, _ := f.issue("cold", "ops", keyOpts{})
	const window = 400 * time.Millisecond
	v, _ := startVerifier(t, f, func(c *Config) { c.StaleIfError = window })
	require.Equal(t, CodeValid, check(t, v, Request{Key: key}))

	f.setDown(true)
	downAt := time.Now()
	require.Eventually(t, func() bool { return v.Status().State == "stale" }, time.Second, time.Millisecond)
	assert.True(t, v.Status().Ready, "readyz stays true inside the stale window (DESIGN §6): a Vault blip must not empty the load balancer")
	if time.Since(downAt) < window/2 {
		assert.Equal(t, CodeValid, check(t, v, Request{Key: key}), "cached verdicts are served within the window")
		_, err := v.Check(context.Background(), Request{Key: cold, ClientIP: localhost})
		assert.ErrorIs(t, err, ErrUnavailable, "a miss cannot be decided without Vault")
	}
	require.Eventually(t, func() bool {
		_, err := v.Check(context.Background(), Request{Key: key, ClientIP: localhost})
		return err != nil
	}, 2*window, 5*time.Millisecond)
	_, err := v.Check(context.Background(), Request{Key: key, ClientIP: localhost})
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = v.Check(context.Background(), Request{Key: "hello"})
	assert.ErrorIs(t, err, ErrUnavailable, "503 for everything once the window ran out")
	assert.Equal(t, "unavailable", v.Status().State)
	assert.False(t, v.Status().Ready, "not ready once the stale window ran out")

	f.setDown(false)
	require.Eventually(t, func() bool { return v.Status().Ready }, 5*time.Second, 5*time.Millisecond, "recovers without a restart")
	assert.Equal(t, CodeValid, check(t, v, Request{Key: key}))
	assert.Equal(t, CodeValid, check(t, v, Request{Key: cold}))
}

func TestUnavailableBeforeFirstFeedPoll(t *testing.T) {
	f := newFakeVault(t)
	f.setDown(true)
	v, err := New(Config{VaultAddrs: []string{f.srv.URL}, VaultToken: f.token})
	require.NoError(t, err)
	_, err = v.Check(context.Background(), Request{Key: "hello"})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.Equal(t, "unavailable", v.Status().State)
	assert.False(t, v.Status().Ready, "not ready before the first feed sync")
}

func TestConcurrentMissesAreBatched(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	first, _ := f.issue("first", "ops", keyOpts{})
	var keys []string
	for i := range 20 {
		k, _ := f.issue("k"+string(rune('a'+i)), "ops", keyOpts{})
		keys = append(keys, k)
	}
	v, _ := startVerifier(t, f, func(c *Config) { c.MaxInFlight = 1 })

	inLookup, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.setLookupHook(func([]string) { once.Do(func() { close(inLookup); <-release }) })
	var wg sync.WaitGroup
	wg.Go(func() { assert.Equal(t, CodeValid, check(t, v, Request{Key: first})) })
	<-inLookup // the only slot is taken
	for _, k := range keys {
		wg.Go(func() { assert.Equal(t, CodeValid, check(t, v, Request{Key: k})) })
	}
	require.Eventually(t, func() bool { return len(v.loader.queue) == len(keys) }, 2*time.Second, time.Millisecond)
	close(release)
	wg.Wait()

	calls := f.lookupCalls()
	require.Len(t, calls, 2, "the queued misses went out as one lookup write")
	assert.Len(t, calls[0], 1)
	assert.Len(t, calls[1], len(keys))
	f.mu.Lock()
	assert.Equal(t, 1, f.decrypts, "the shared data key was unwrapped once and then cached")
	f.mu.Unlock()
}

func TestConcurrentMissesOfOneKeyAreCoalesced(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, nil)
	inLookup, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.setLookupHook(func([]string) { once.Do(func() { close(inLookup); <-release }) })
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { assert.Equal(t, CodeValid, check(t, v, Request{Key: key})) })
	}
	<-inLookup
	time.Sleep(20 * time.Millisecond) // let the others pile up behind the one lookup
	close(release)
	wg.Wait()
	assert.Len(t, f.lookupCalls(), 1)
}

func TestCheckHotPathDoesNotAllocate(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{workspace: "prod"})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, Workspace: "prod", Permissions: []string{"clusters:read"}, ClientIP: localhost}
	require.Equal(t, CodeValid, check(t, v, req))
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if verdict, err := v.Check(ctx, req); err != nil || verdict.Code != CodeValid {
			t.Fatal("not valid")
		}
	})
	assert.Zero(t, allocs)
	forged := Request{Key: forge(t, key), ClientIP: localhost}
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = v.Check(ctx, forged) }), "forged secrets are answered from the cache too")
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = v.Check(ctx, Request{Key: "hello"}) }))
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no Vault address")
	assert.Contains(t, err.Error(), "no Vault credentials")
	_, err = New(Config{VaultAddrs: []string{"http://x"}, VaultToken: "t", AppRoleRoleID: "r", AppRoleSecretIDFile: "f"})
	assert.ErrorContains(t, err, "more than one Vault credential")
	_, err = New(Config{VaultAddrs: []string{"http://x"}, AppRoleRoleID: "r"})
	assert.ErrorContains(t, err, "both a role id and a secret id file")
	_, err = New(Config{VaultAddrs: []string{"http://x"}, VaultToken: "t", FeedWait: 30 * time.Second})
	assert.ErrorContains(t, err, "stall Vault")
}

func TestTokenFileReplacedAfterVaultRefusesTheOldToken(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	file := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(file, []byte(f.token+"\n"), 0o600))
	v, _ := startVerifier(t, f, func(c *Config) { c.VaultToken, c.VaultTokenFile = "", file })
	require.Equal(t, CodeValid, check(t, v, Request{Key: key}))

	// Vault Agent writes a new token and the old one stops working.
	require.NoError(t, os.WriteFile(file, []byte("second-token"), 0o600))
	f.mu.Lock()
	f.token = "second-token"
	f.mu.Unlock()
	cold, _ := f.issue("cold", "ops", keyOpts{})
	require.Eventually(t, func() bool {
		verdict, err := v.Check(context.Background(), Request{Key: cold, ClientIP: localhost})
		return err == nil && verdict.Code == CodeValid
	}, 5*time.Second, 20*time.Millisecond, "the new token is picked up after Vault refused the old one")
}
