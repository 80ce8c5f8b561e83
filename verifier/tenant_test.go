package verifier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// TestTenantPinnedAnswers: a pinned tenant turns every key of another tenant
// into TENANT_MISMATCH whatever its status, described no further, while a
// wrong secret still answers NOT_FOUND (nothing tells a forger that the key_id
// exists in another tenant).
func TestTenantPinnedAnswers(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	acme, _ := f.issue("acme-key", "ops", keyOpts{tenant: "acme", workspace: "prod"})
	globex, _ := f.issue("globex-key", "ops", keyOpts{tenant: "globex"})
	untenanted, _ := f.issue("old", "ops", keyOpts{})
	past := time.Now().Add(-time.Minute)
	expired, _ := f.issue("expired", "ops", keyOpts{tenant: "acme", expires: &past})
	revoked, revokedID := f.issue("revoked", "ops", keyOpts{tenant: "acme"})
	f.setStatus(revokedID, wire.StatusRevoked, wire.OpRevoked)
	disabled, disabledID := f.issue("disabled", "ops", keyOpts{tenant: "acme"})
	f.setStatus(disabledID, wire.StatusDisabled, wire.OpDisabled)
	unknown, err := token.Generate("vak")
	require.NoError(t, err)
	v, _ := startVerifier(t, f, nil)

	for _, tc := range []struct {
		name string
		req  Request
		want Code
	}{
		{"own tenant", Request{Key: acme, Tenant: "acme"}, CodeValid},
		{"no pin", Request{Key: acme}, CodeValid},
		{"another tenant", Request{Key: acme, Tenant: "globex"}, CodeTenantMismatch},
		{"another tenant's key", Request{Key: globex, Tenant: "acme"}, CodeTenantMismatch},
		{"revoked key of another tenant", Request{Key: revoked, Tenant: "globex"}, CodeTenantMismatch},
		{"disabled key of another tenant", Request{Key: disabled, Tenant: "globex"}, CodeTenantMismatch},
		{"expired key of another tenant", Request{Key: expired, Tenant: "globex"}, CodeTenantMismatch},
		{"revoked key of its tenant", Request{Key: revoked, Tenant: "acme"}, CodeRevoked},
		{"disabled key of its tenant", Request{Key: disabled, Tenant: "acme"}, CodeDisabled},
		{"expired key of its tenant", Request{Key: expired, Tenant: "acme"}, CodeExpired},
		{"mismatch before the request's own narrowing", Request{Key: acme, Tenant: "globex", Workspace: "dev-eu"}, CodeTenantMismatch},
		{"a key naming no tenant is no pinned tenant's", Request{Key: untenanted, Tenant: "acme"}, CodeTenantMismatch},
		{"forged secret, another tenant", Request{Key: forge(t, acme), Tenant: "globex"}, CodeNotFound},
		{"forged secret of a revoked key, another tenant", Request{Key: forge(t, revoked), Tenant: "globex"}, CodeNotFound},
		{"unknown key_id, pinned", Request{Key: unknown.String(), Tenant: "acme"}, CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, check(t, v, tc.req), "first answer")
			assert.Equal(t, tc.want, check(t, v, tc.req), "cached answer")
		})
	}

	t.Run("answers carry the key's tenant", func(t *testing.T) {
		for _, pin := range []string{"", "acme"} {
			got, err := v.Check(context.Background(), Request{Key: acme, Tenant: pin, ClientIP: localhost})
			require.NoError(t, err)
			assert.Equal(t, "acme", got.Tenant, "pin %q", pin)
		}
	})
	t.Run("a mismatch describes nothing of the other tenant's key", func(t *testing.T) {
		got, err := v.Check(context.Background(), Request{Key: revoked, Tenant: "globex", ClientIP: localhost})
		require.NoError(t, err)
		assert.Equal(t, Verdict{Code: CodeTenantMismatch, KeyID: revokedID, FeedSeq: got.FeedSeq}, got)
	})
}

// TestTenantCIDRsAreAThirdList: a client address must match the tenant-wide
// list as well as the key's and the role's; a tenant change applies at once
// and evicts only that tenant's keys.
func TestTenantCIDRsAreAThirdList(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f) // role: 127.0.0.0/8, 10.0.0.0/8
	f.setTenantCIDRs("acme", []string{"10.1.0.0/16"})
	key, _ := f.issue("k", "ops", keyOpts{tenant: "acme", cidrs: []string{"10.0.0.0/8"}})
	other, otherID := f.issue("other", "ops", keyOpts{tenant: "globex"})
	v, _ := startVerifier(t, f, nil)
	in, out := netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("10.2.0.1")

	assert.Equal(t, CodeValid, check(t, v, Request{Key: key, ClientIP: in}))
	assert.Equal(t, CodeIPNotAllowed, check(t, v, Request{Key: key, ClientIP: out}), "inside the key's and the role's lists, outside the tenant's")
	require.Equal(t, CodeValid, check(t, v, Request{Key: other, ClientIP: out}))

	f.setTenantCIDRs("acme", []string{"10.2.0.0/16"})
	eventually(t, v, Request{Key: key, ClientIP: out}, CodeValid)
	assert.Equal(t, CodeIPNotAllowed, check(t, v, Request{Key: key, ClientIP: in}))
	before := len(f.lookupCalls())
	assert.Equal(t, CodeValid, check(t, v, Request{Key: other, ClientIP: out}))
	assert.Len(t, f.lookupCalls(), before, "another tenant's key stays cached: %s", otherID)

	f.setTenantCIDRs("acme", []string{"nonsense"})
	eventually(t, v, Request{Key: key, ClientIP: out}, CodeIPNotAllowed)
	assert.Equal(t, CodeIPNotAllowed, check(t, v, Request{Key: key, ClientIP: in}), "an entry that does not parse matches nothing")
}

// TestAllowlistChangeEvictsTheTenantsKeys: an allow-list change names the
// tenant and the list, no key: every cached key of the tenant is dropped.
func TestAllowlistChangeEvictsTheTenantsKeys(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{tenant: "acme", cidrs: []string{"10.1.0.0/16"}})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, ClientIP: netip.MustParseAddr("10.1.0.5")}
	require.Equal(t, CodeValid, check(t, v, req))
	f.setAllowlist("acme", "office", []string{"10.9.0.0/16"})
	eventually(t, v, req, CodeIPNotAllowed)
}

// TestTenantChangeRacingLookupIsNotCached is the race of DESIGN §6 for a
// tenant change: a lookup reads the key, the tenant's list narrows and the
// verifier applies it, then the lookup's stale answer arrives. Without the
// tenant mark in cache.Insert the stale VALID is cached and the last check
// answers VALID.
func TestTenantChangeRacingLookupIsNotCached(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{tenant: "acme"})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, ClientIP: netip.MustParseAddr("10.1.0.5")}

	lookupRacing(t, f, v, req, func() uint64 { return f.setTenantCIDRs("acme", []string{"192.0.2.0/24"}) })
	assert.Equal(t, CodeIPNotAllowed, check(t, v, req))
}

// TestCreatorRoleChangeEvictsTheKeysItCreated: a key's permissions are capped
// by its creator's platform role; a change of that role (not the key's own)
// must drop the cached key. Without the creator-role match in EvictRole the
// key keeps answering VALID from the cache.
func TestCreatorRoleChangeEvictsTheKeysItCreated(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	f.role("lead", []string{"clusters:read", "nodes:*"}, []string{"*"}, nil)
	key, _ := f.issue("k", "ops", keyOpts{tenant: "acme", creatorRole: "lead"})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, Permissions: []string{"clusters:read"}}
	require.Equal(t, CodeValid, check(t, v, req))
	require.Equal(t, CodeValid, check(t, v, req))
	f.downgrade("lead", []string{"nodes:read"})
	eventually(t, v, req, CodeInsufficientPermissions)
}

func TestForwardAuthTenantHeader(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{tenant: "acme"})
	revoked, revokedID := f.issue("gone", "ops", keyOpts{tenant: "acme"})
	f.setStatus(revokedID, wire.StatusRevoked, wire.OpRevoked)
	v, _ := startVerifier(t, f, nil)
	h := v.Handler()
	const peer = "127.0.0.1:1"

	w := authRequest(h, map[string]string{"X-API-Key": key, verdict.HeaderTenant: "acme"}, peer)
	require.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, "acme", w.Header().Get(verdict.HeaderTenant), "the 200 names the key's tenant")
	assert.Equal(t, id, w.Header().Get(verdict.HeaderKeyID))
	w = authRequest(h, map[string]string{"X-API-Key": key}, peer)
	require.Equal(t, http.StatusOK, w.Code, "no tenant required")
	assert.Equal(t, "acme", w.Header().Get(verdict.HeaderTenant))

	for name, headers := range map[string]map[string]string{
		"another tenant":                {"X-API-Key": key, verdict.HeaderTenant: "globex"},
		"revoked key of another tenant": {"X-API-Key": revoked, verdict.HeaderTenant: "globex"},
	} {
		w := authRequest(h, headers, peer)
		assert.Equal(t, http.StatusForbidden, w.Code, name)
		assert.Equal(t, string(CodeTenantMismatch), w.Header().Get(verdict.HeaderCode), name)
		assert.Empty(t, w.Header().Get(verdict.HeaderTenant), name)
		assert.Empty(t, w.Header().Get(verdict.HeaderKeyID), name)
	}

	two := httptest.NewRequest(http.MethodGet, "/v1/auth", nil)
	two.RemoteAddr = peer
	two.Header.Set("X-API-Key", key)
	two.Header.Add(verdict.HeaderTenant, "acme")   // the client's
	two.Header.Add(verdict.HeaderTenant, "globex") // a proxy that appends instead of replacing
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, two)
	assert.Equal(t, http.StatusBadRequest, rec.Code, "an ambiguous tenant is refused, not guessed")

	// A configured name: the default header is then just another client header.
	v2, _ := startVerifier(t, f, func(c *Config) { c.TenantHeader = "X-Site-Tenant" })
	h2 := v2.Handler()
	assert.Equal(t, http.StatusForbidden, authRequest(h2, map[string]string{"X-API-Key": key, "X-Site-Tenant": "globex"}, peer).Code)
	assert.Equal(t, http.StatusOK, authRequest(h2, map[string]string{"X-API-Key": key, "X-Site-Tenant": "acme"}, peer).Code)
	assert.Equal(t, http.StatusOK, authRequest(h2, map[string]string{"X-API-Key": key, verdict.HeaderTenant: "globex"}, peer).Code)
}

func TestVerifyEndpointTenant(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{tenant: "acme"})
	path := filepath.Join(t.TempDir(), "audit.log")
	v, _ := startVerifier(t, f, func(c *Config) { c.AuditLog = path })
	h := v.Handler()

	status, got := postVerify(t, h, jsonBody(t, map[string]any{"key": key, "tenant": "acme"}))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "VALID", got["code"])
	assert.Equal(t, "acme", got["tenant"])
	status, got = postVerify(t, h, jsonBody(t, map[string]any{"key": key, "tenant": "globex"}))
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "TENANT_MISMATCH", got["code"])
	assert.Equal(t, false, got["valid"])
	assert.NotContains(t, got, "tenant", "another tenant's name is not told")
	assert.Empty(t, got["name"])
	postVerify(t, h, jsonBody(t, map[string]any{"key": key}))

	require.NoError(t, v.audit.Flush())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 3)
	assert.Contains(t, lines[0], `"tenant":"acme"`)
	assert.Contains(t, lines[1], `"tenant":"globex"`, "a mismatch is logged as the refusal of the pinned tenant")
	assert.Contains(t, lines[1], `"code":"TENANT_MISMATCH"`)
	assert.Contains(t, lines[2], `"tenant":"acme"`, "unpinned: the key's tenant")
}

func TestCheckHotPathWithTenantDoesNotAllocate(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	f.setTenantCIDRs("acme", []string{"127.0.0.0/8"})
	key, _ := f.issue("k", "ops", keyOpts{tenant: "acme", workspace: "prod"})
	v, _ := startVerifier(t, f, nil)
	req := Request{Key: key, Tenant: "acme", Workspace: "prod", Permissions: []string{"clusters:read"}, ClientIP: localhost}
	require.Equal(t, CodeValid, check(t, v, req))
	ctx := context.Background()
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = v.Check(ctx, req) }))
	other := req
	other.Tenant = "globex"
	require.Equal(t, CodeTenantMismatch, check(t, v, other))
	assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = v.Check(ctx, other) }))
}
