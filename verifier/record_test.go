package verifier

import (
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// sealedKey is a key of mount "m" sealed under a zero data key, with the
// digest of a forged secret beside its own.
type sealedKey struct {
	tok            token.Token
	digest, forged [32]byte
	dek            []byte
	sealed         envelope.Sealed
}

func newSealedKey(t *testing.T, keyID string) sealedKey {
	t.Helper()
	k := sealedKey{tok: token.Token{Prefix: "vak", KeyID: keyID, Secret: strings.Repeat("s", token.SecretLen)}, dek: make([]byte, envelope.DEKSize)}
	forged := k.tok
	forged.Secret = strings.Repeat("f", token.SecretLen)
	k.digest, k.forged = k.tok.Digest(), forged.Digest()
	var err error
	k.sealed, err = envelope.Seal(k.dek, "vault:v1:x", envelope.AAD("m", keyID), k.digest[:])
	require.NoError(t, err)
	return k
}

// decide caches e (after edit, when given) and decides req presented with digest.
func (k sealedKey) decide(t *testing.T, e wire.Entry, edit func(*wire.Entry), digest *[32]byte, req Request, now time.Time) Verdict {
	t.Helper()
	if edit != nil {
		edit(&e)
	}
	r, err := newCachedKey(e, k.dek)
	require.NoError(t, err)
	return r.decide(digest, &req, now)
}

// TestCachedKeyDecidesEveryRule pins the whole verdict (not only its code) of
// a cached key for each rule of DESIGN §6, so that a change of how the cache
// stores a key cannot change what it answers.
func TestCachedKeyDecidesEveryRule(t *testing.T) {
	k := newSealedKey(t, "Rec0123456789abc")
	tok, d, bad, sealed := k.tok, k.digest, k.forged, k.sealed
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	future, past := now.Add(time.Hour), now.Add(-time.Hour)
	meta := map[string]string{"team": "sre"}
	base := func() wire.Entry {
		return wire.Entry{
			KeyID: tok.KeyID, Status: wire.StatusActive, Name: "n", Role: "ops", Workspace: "prod",
			Permissions: []string{"clusters:read", "nodes:*"}, AllowedWorkspaces: []string{"prod", "dev-*"},
			AllowedCIDRs: []string{"10.1.0.0/16"}, RoleAllowedCIDRs: []string{"10.0.0.0/8"},
			ExpiresAt: &future, Metadata: meta, MountID: "m", Sealed: &sealed,
		}
	}
	in, out := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.2.0.1")
	described := func(c Code) Verdict {
		return Verdict{Code: c, KeyID: tok.KeyID, Name: "n", Role: "ops", Workspace: "prod",
			Permissions: []string{"clusters:read", "nodes:*"}, ExpiresAt: &future}
	}
	valid := described(CodeValid)
	valid.Metadata = meta
	for _, tc := range []struct {
		name   string
		edit   func(*wire.Entry)
		digest *[32]byte
		req    Request
		want   Verdict
	}{
		{"valid", nil, &d, Request{ClientIP: in, Workspace: "prod", Permissions: []string{"nodes:drain"}}, valid},
		{"forged secret", nil, &bad, Request{ClientIP: in}, Verdict{Code: CodeNotFound, KeyID: tok.KeyID}},
		{"disabled", func(e *wire.Entry) { e.Status = wire.StatusDisabled }, &d, Request{ClientIP: in}, described(CodeDisabled)},
		{"revoked, forged", func(e *wire.Entry) { e.Status = wire.StatusRevoked }, &bad, Request{ClientIP: in}, Verdict{Code: CodeNotFound, KeyID: tok.KeyID}},
		{"tombstone without digest", func(e *wire.Entry) { e.Status, e.Sealed = wire.StatusRevoked, nil }, &d, Request{ClientIP: in}, Verdict{Code: CodeRevoked, KeyID: tok.KeyID}},
		{"not found", func(e *wire.Entry) { *e = wire.Entry{KeyID: tok.KeyID, Status: wire.StatusNotFound} }, &d, Request{ClientIP: in}, Verdict{Code: CodeNotFound, KeyID: tok.KeyID}},
		{"expired by time", func(e *wire.Entry) { e.ExpiresAt = &past }, &d, Request{ClientIP: in},
			Verdict{Code: CodeExpired, KeyID: tok.KeyID, Name: "n", Role: "ops", Workspace: "prod", Permissions: []string{"clusters:read", "nodes:*"}, ExpiresAt: &past}},
		{"key CIDR", nil, &d, Request{ClientIP: out}, described(CodeIPNotAllowed)},
		{"role CIDR", func(e *wire.Entry) { e.AllowedCIDRs = nil }, &d, Request{ClientIP: netip.MustParseAddr("192.0.2.1")}, described(CodeIPNotAllowed)},
		{"bad CIDR denies", func(e *wire.Entry) { e.AllowedCIDRs = []string{"nonsense"} }, &d, Request{ClientIP: in}, described(CodeIPNotAllowed)},
		{"workspace", nil, &d, Request{ClientIP: in, Workspace: "dev-eu"}, described(CodeWorkspaceMismatch)},
		{"permission", nil, &d, Request{ClientIP: in, Permissions: []string{"clusters:write"}}, described(CodeInsufficientPermissions)},
		{"tenant-wide key takes the asked workspace", func(e *wire.Entry) {
			e.Workspace, e.AllowedCIDRs, e.RoleAllowedCIDRs, e.ExpiresAt, e.Metadata = "", nil, nil, nil, nil
		}, &d, Request{Workspace: "dev-eu"},
			Verdict{Code: CodeValid, KeyID: tok.KeyID, Name: "n", Role: "ops", Workspace: "dev-eu", Permissions: []string{"clusters:read", "nodes:*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, k.decide(t, base(), tc.edit, tc.digest, tc.req, now))
		})
	}
}

func TestCachedKeyRefusesUnusableEntries(t *testing.T) {
	_, err := newCachedKey(wire.Entry{KeyID: "k", Status: "odd"}, nil)
	assert.Error(t, err, "unknown status")
	_, err = newCachedKey(wire.Entry{KeyID: "k", Status: wire.StatusActive}, nil)
	assert.Error(t, err, "active without a sealed digest")
	sealed := envelope.Sealed{}
	_, err = newCachedKey(wire.Entry{KeyID: "k", Status: wire.StatusActive, Sealed: &sealed}, nil)
	assert.Error(t, err, "sealed digest without its data key")
}

// TestKeysOfARoleShareOneGrantsBlock: what keys of a role repeat is held once,
// and any difference in it (including a nil against an empty list, which the
// verdict renders differently) makes a block of its own.
func TestKeysOfARoleShareOneGrantsBlock(t *testing.T) {
	e := wire.Entry{Role: "share-test", Permissions: []string{"a:read"}, AllowedWorkspaces: []string{"*"}, RoleAllowedCIDRs: []string{"10.0.0.0/8"}}
	e2 := e
	e2.Permissions = []string{"a:read"} // equal values, another slice
	g := repeated.grantsOf(&e)
	assert.Same(t, g, repeated.grantsOf(&e2))
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, g.roleNets)
	for _, edit := range []func(*wire.Entry){
		func(x *wire.Entry) { x.Workspace = "prod" },
		func(x *wire.Entry) { x.Permissions = []string{"a:read", "b:read"} },
		func(x *wire.Entry) { x.Permissions = []string{"a:rea", "d:read"} },
		func(x *wire.Entry) { x.Permissions = []string{} },
		func(x *wire.Entry) { x.Permissions = nil },
		func(x *wire.Entry) { x.AllowedWorkspaces = []string{"dev-*"} },
		func(x *wire.Entry) { x.RoleAllowedCIDRs = nil },
		func(x *wire.Entry) { x.Role = "share-test-2" },
	} {
		other := e
		edit(&other)
		assert.NotSame(t, g, repeated.grantsOf(&other), "%+v", other)
	}
}

// TestCachedKeyStaysSmall: a verifier holds a million cached keys (DESIGN §6,
// BENCHMARKS.md: about 246 heap bytes per key). A field added to cachedKey
// must find room in a shared block or in keyExtra, not grow every key.
func TestCachedKeyStaysSmall(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(cachedKey{}), uintptr(128))
}

// TestCachedKeyTenantRules pins the tenant rules of decide: the mismatch comes
// after the secret check and before every status, and describes nothing; the
// tenant-wide list is a third address list.
func TestCachedKeyTenantRules(t *testing.T) {
	k := newSealedKey(t, "Ten0123456789abc")
	tok, d, bad, sealed := k.tok, k.digest, k.forged, k.sealed
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	past := now.Add(-time.Hour)
	base := func() wire.Entry {
		return wire.Entry{
			KeyID: tok.KeyID, Status: wire.StatusActive, Name: "n", Tenant: "acme", Role: "ops",
			Permissions: []string{"clusters:read"}, AllowedWorkspaces: []string{"*"},
			AllowedCIDRs: []string{"10.0.0.0/8"}, RoleAllowedCIDRs: []string{"10.0.0.0/8"},
			TenantAllowedCIDRs: []string{"10.1.0.0/16"}, MountID: "m", Sealed: &sealed,
		}
	}
	in, out := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.2.0.1")
	mismatch := Verdict{Code: CodeTenantMismatch, KeyID: tok.KeyID}
	notFound := Verdict{Code: CodeNotFound, KeyID: tok.KeyID}
	for _, tc := range []struct {
		name   string
		edit   func(*wire.Entry)
		digest *[32]byte
		req    Request
		want   Code
		exact  *Verdict
	}{
		{"own tenant", nil, &d, Request{Tenant: "acme", ClientIP: in}, CodeValid, nil},
		{"no pin", nil, &d, Request{ClientIP: in}, CodeValid, nil},
		{"another tenant", nil, &d, Request{Tenant: "globex", ClientIP: in}, "", &mismatch},
		{"revoked, another tenant", func(e *wire.Entry) { e.Status = wire.StatusRevoked }, &d, Request{Tenant: "globex", ClientIP: in}, "", &mismatch},
		{"disabled, another tenant", func(e *wire.Entry) { e.Status = wire.StatusDisabled }, &d, Request{Tenant: "globex", ClientIP: in}, "", &mismatch},
		{"expired, another tenant", func(e *wire.Entry) { e.ExpiresAt = &past }, &d, Request{Tenant: "globex", ClientIP: in}, "", &mismatch},
		{"outside every list, another tenant", nil, &d, Request{Tenant: "globex", ClientIP: out}, "", &mismatch},
		{"forged, another tenant", nil, &bad, Request{Tenant: "globex", ClientIP: in}, "", &notFound},
		{"tombstone without digest, another tenant", func(e *wire.Entry) { e.Status, e.Sealed = wire.StatusRevoked, nil }, &d, Request{Tenant: "globex"}, "", &notFound},
		{"tombstone without digest, own tenant", func(e *wire.Entry) { e.Status, e.Sealed = wire.StatusRevoked, nil }, &d, Request{Tenant: "acme"}, CodeRevoked, nil},
		{"no tenant on the entry, pinned", func(e *wire.Entry) { e.Tenant = "" }, &d, Request{Tenant: "acme", ClientIP: in}, "", &mismatch},
		{"tenant CIDR", nil, &d, Request{Tenant: "acme", ClientIP: out}, CodeIPNotAllowed, nil},
		{"bad tenant CIDR denies", func(e *wire.Entry) { e.TenantAllowedCIDRs = []string{"nonsense"} }, &d, Request{ClientIP: in}, CodeIPNotAllowed, nil},
		{"no tenant list", func(e *wire.Entry) { e.TenantAllowedCIDRs = nil }, &d, Request{ClientIP: out}, CodeValid, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := base()
			if tc.edit != nil {
				tc.edit(&e)
			}
			got := k.decide(t, e, nil, tc.digest, tc.req, now)
			if tc.exact != nil {
				assert.Equal(t, *tc.exact, got)
				return
			}
			assert.Equal(t, tc.want, got.Code)
			if got.Code == CodeValid || got.Code == CodeIPNotAllowed {
				assert.Equal(t, e.Tenant, got.Tenant, "a described answer names the key's tenant")
			}
		})
	}
}

// TestKeysOfATenantShareOneTenantBlock: the tenant (and its list) is held
// once per tenant, not per key, and apart from the role's grants block.
func TestKeysOfATenantShareOneTenantBlock(t *testing.T) {
	e := wire.Entry{Tenant: "share-acme", Role: "r1", TenantAllowedCIDRs: []string{"10.0.0.0/8"}}
	e2 := e
	e2.Role = "r2"
	tb := repeated.tenantOf(&e)
	assert.Same(t, tb, repeated.tenantOf(&e2))
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, tb.nets)
	other := e
	other.TenantAllowedCIDRs = []string{"10.1.0.0/16"}
	assert.NotSame(t, tb, repeated.tenantOf(&other), "a changed tenant list makes a new block")
	other = e
	other.Tenant = "share-globex"
	assert.NotSame(t, tb, repeated.tenantOf(&other))
	assert.Nil(t, repeated.tenantOf(&wire.Entry{Role: "r1"}), "an entry naming no tenant holds no block")

	g := wire.Entry{Role: "share-role", Tenant: "a"}
	g2 := g
	g2.Tenant = "b"
	assert.Same(t, repeated.grantsOf(&g), repeated.grantsOf(&g2), "a role's block is shared across tenants")
	g2.CreatorRole = "lead"
	assert.NotSame(t, repeated.grantsOf(&g), repeated.grantsOf(&g2), "the creator role is part of the block")
}

// TestRevokedFormIsWhatALookupOfTheRevokedRecordAnswers: the form a revocation
// from the feed leaves cached (cachedKey.revoked) is the one a lookup of the
// revoked record gives, whatever the active key carried, so a check answers
// the same with or without the lookup.
func TestRevokedFormIsWhatALookupOfTheRevokedRecordAnswers(t *testing.T) {
	k := newSealedKey(t, "Rev0123456789abc")
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	future := now.Add(time.Hour)
	active := wire.Entry{
		KeyID: k.tok.KeyID, Status: wire.StatusActive, Name: "n", Tenant: "acme", Role: "ops", Workspace: "prod",
		Permissions: []string{"clusters:read"}, AllowedWorkspaces: []string{"prod"}, AllowedCIDRs: []string{"10.1.0.0/16"},
		RoleAllowedCIDRs: []string{"10.0.0.0/8"}, TenantAllowedCIDRs: []string{"10.1.2.0/24"}, CreatorRole: "lead",
		ExpiresAt: &future, Metadata: map[string]string{"team": "sre"}, MountID: "m", Sealed: &k.sealed, Seq: 7,
	}
	// What the plugin's lookup answers for the record once revoked (entryFor).
	revokedEntry := wire.Entry{
		KeyID: active.KeyID, Status: wire.StatusRevoked, Name: "n", Tenant: "acme", Role: "ops", Workspace: "prod",
		CreatorRole: "lead", ExpiresAt: &future, MountID: "m", Sealed: &k.sealed, Seq: 8,
	}
	for _, expiry := range []*time.Time{&future, nil} {
		active.ExpiresAt, revokedEntry.ExpiresAt = expiry, expiry
		cached, err := newCachedKey(active, k.dek)
		require.NoError(t, err)
		looked, err := newCachedKey(revokedEntry, k.dek)
		require.NoError(t, err)
		cached.loaded = now.Add(-time.Minute).UnixNano()
		got := cached.revoked()
		assert.Equal(t, cached.loaded, got.loaded, "as old as the lookup it comes from")
		got.loaded = looked.loaded
		assert.Equal(t, looked, got)
		for _, req := range []Request{{}, {Tenant: "acme"}, {Tenant: "globex"}, {ClientIP: netip.MustParseAddr("192.0.2.1"), Permissions: []string{"x"}}} {
			for _, d := range []*[32]byte{&k.digest, &k.forged} {
				assert.Equal(t, looked.decide(d, &req, now), got.decide(d, &req, now), "%+v", req)
			}
		}
		assert.Equal(t, CodeRevoked, got.decide(&k.digest, &Request{}, now).Code)
	}
}
