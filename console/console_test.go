package console

import (
	"io/fs"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignInSetsAStrictSessionAndShowsTheEmptyList(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	require.Equal(t, http.StatusSeeOther, a.get("/keys").status, "signed out: the list redirects to sign-in")

	ans := a.signIn("alice", "alice-pw")
	require.Equal(t, http.StatusSeeOther, ans.status, ans.body)
	var sessionSet bool
	for _, line := range ans.header.Values("Set-Cookie") {
		if strings.HasPrefix(line, sessionCookie+"=") {
			sessionSet = true
			for _, attr := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
				assert.Contains(t, line, attr)
			}
			id := strings.TrimSuffix(strings.SplitN(strings.TrimPrefix(line, sessionCookie+"="), ";", 2)[0], ";")
			assert.GreaterOrEqual(t, len(id), 43, "a 256-bit session id")
		}
	}
	require.True(t, sessionSet)

	list := a.get("/keys")
	require.Equal(t, http.StatusOK, list.status)
	requireContains(t, list.body, "No API keys yet", "Create API key", "Sign out", "acme")
	assert.Equal(t, contentSecurityPolicy, list.header.Get("Content-Security-Policy"))
	assert.Contains(t, list.header.Get("Content-Security-Policy"), "frame-ancestors 'none'")
	assert.NotContains(t, list.header.Get("Content-Security-Policy"), "unsafe-inline")
	assert.Equal(t, "DENY", list.header.Get("X-Frame-Options"))
	assert.Equal(t, "no-referrer", list.header.Get("Referrer-Policy"))
	assert.Equal(t, "no-store", list.header.Get("Cache-Control"))
}

func TestWrongPasswordAndNoTenantAreRefusedInPlainWords(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	ans := a.signIn("alice", "wrong")
	assert.Equal(t, http.StatusUnauthorized, ans.status)
	assert.Contains(t, ans.body, "The username or password is not right")

	ans = a.signIn("nobody", "nobody-pw")
	assert.Equal(t, http.StatusForbidden, ans.status)
	assert.Contains(t, ans.body, "not linked to an organization")
	assert.Equal(t, 0, h.fv.tokenCount(), "the token of a refused sign-in is revoked")
}

func TestSignInIsRateLimitedPerUsername(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SignInBurst, c.SignInEvery = 2, time.Minute })
	a := h.agent(t)
	for range 2 {
		assert.Equal(t, http.StatusUnauthorized, a.signIn("alice", "wrong").status)
	}
	ans := a.signIn("alice", "alice-pw")
	assert.Equal(t, http.StatusTooManyRequests, ans.status, "even the right password waits once the bucket is empty")
	assert.Contains(t, ans.body, "Too many sign-in attempts")
	h.clock.add(time.Minute)
	a.mustSignIn("alice", "alice-pw")
}

func TestCreateShowsTheKeyOnceAndNeverInAURLLogOrCache(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")

	ans := a.create(map[string]string{"name": "ci-deploy", "description": "CI", "ips": "restrict",
		"cidrs": "203.0.113.0/24, 198.51.100.7", "allowlists": "office"})
	require.Equal(t, http.StatusOK, ans.status, "the key is rendered in the POST answer itself, no redirect")
	assert.Empty(t, ans.header.Get("Location"))
	assert.Equal(t, "no-store", ans.header.Get("Cache-Control"))
	key := keyPattern.FindString(ans.body)
	require.NotEmpty(t, key)
	requireContains(t, ans.body, "Copy", "Done", "only time it is shown")

	k := h.fv.keys["acme"]["ci-deploy"]
	require.NotNil(t, k)
	assert.Equal(t, []string{"203.0.113.0/24", "198.51.100.7/32"}, k.AllowedCIDRs)
	assert.Equal(t, []string{"office"}, k.Allowlists)
	assert.NotEmpty(t, k.ExpiresAt)

	list := a.get("/keys")
	assert.NotContains(t, list.body, key, "gone after Done")
	assert.Contains(t, list.body, "ci-deploy")
	assert.Contains(t, list.body, `href="/keys/ci-deploy/revoke" aria-label="Revoke ci-deploy"`, "revoke from the list")
	details := a.get("/keys/ci-deploy")
	assert.NotContains(t, details.body, key)
	for _, call := range h.fv.callLog() {
		assert.NotContains(t, call, key, "never in a URL")
	}
	assert.NotContains(t, h.log.String(), key, "never in a log")
	assert.NotContains(t, h.log.String(), "hvs.", "no Vault token in a log")
}

func TestNeverExpireSendsTTLZero(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	a.create(map[string]string{"name": "forever", "expiry": "never"})
	require.NotNil(t, h.fv.keys["acme"]["forever"])
	assert.Empty(t, h.fv.keys["acme"]["forever"].ExpiresAt)
	assert.Contains(t, a.get("/keys").body, ">Never<")
}

func TestFormsWithoutTheCSRFTokenAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	form := url.Values{"name": {"sneaky"}, "role": {"developer"}, "expiry": {"never"}, "ips": {"all"}}
	assert.Equal(t, http.StatusForbidden, a.post("/keys", form).status)
	form.Set("csrf", "forged-"+strings.Repeat("x", 40))
	assert.Equal(t, http.StatusForbidden, a.post("/keys", form).status)
	assert.Empty(t, h.fv.keys["acme"], "nothing was created")

	a.mustCreate("real")
	assert.Equal(t, http.StatusForbidden, a.post("/keys/real/revoke", url.Values{}).status)
	assert.Equal(t, http.StatusForbidden, a.post("/signout", url.Values{}).status)
	assert.NotNil(t, h.fv.keys["acme"]["real"], "not revoked")

	b := h.agent(t)
	assert.Equal(t, http.StatusForbidden, b.post("/signin", url.Values{"username": {"alice"}, "password": {"alice-pw"}}).status,
		"sign-in without the form's token")
}

func TestATenantAdminNeverSeesAnotherTenantsKeys(t *testing.T) {
	h := newHarness(t, nil)
	alice, bob := h.agent(t), h.agent(t)
	alice.mustSignIn("alice", "alice-pw")
	bob.mustSignIn("bob", "bob-pw")
	alice.mustCreate("acme-prod")

	list := bob.get("/keys")
	assert.NotContains(t, list.body, "acme-prod")
	assert.Contains(t, list.body, "No API keys yet")
	assert.Equal(t, http.StatusNotFound, bob.get("/keys/acme-prod").status)
	assert.Equal(t, http.StatusNotFound, bob.get("/keys/acme-prod/revoke").status)
	bob.post("/keys/acme-prod/revoke", url.Values{"csrf": {bob.csrf("/keys")}})
	assert.NotNil(t, h.fv.keys["acme"]["acme-prod"])

	// The console only ever asks for the session's own tenant…
	for _, call := range h.fv.callLog() {
		if strings.HasPrefix(call, "ent-bob ") {
			assert.NotContains(t, call, "tenants/acme", "bob's session asked for another tenant")
		}
	}
	// …and Vault's policy (here the fake) is what refuses another tenant's path.
	var tok string
	for k, e := range h.fv.tokens {
		if e == "ent-bob" {
			tok = k
		}
	}
	_, err := h.console.vault.readKey(t.Context(), tok, "acme", "acme-prod")
	require.Error(t, err)
	assert.Contains(t, plainError(err), "Permission denied")
}

func TestErrorsAreInPlainWords(t *testing.T) {
	h := newHarness(t, nil)
	h.fv.maxKeys = 1
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	a.mustCreate("one")
	for name, tc := range map[string]struct {
		fields map[string]string
		want   string
	}{
		"name taken":     {map[string]string{"name": "one"}, "Name taken"},
		"quota reached":  {map[string]string{"name": "two"}, "Quota reached"},
		"bad name":       {map[string]string{"name": "no spaces"}, "That name is not valid"},
		"bad cidr":       {map[string]string{"name": "x", "ips": "restrict", "cidrs": "10.0.0.0/99"}, "is not an IP address or range"},
		"nothing chosen": {map[string]string{"name": "x", "ips": "restrict"}, "Add at least one trusted IP range"},
		"bad days":       {map[string]string{"name": "x", "days": "0"}, "number of days"},
	} {
		t.Run(name, func(t *testing.T) {
			ans := a.create(tc.fields)
			assert.Equal(t, http.StatusBadRequest, ans.status)
			assert.Contains(t, ans.body, tc.want)
			assert.NotContains(t, ans.body, "max_keys", "never Vault's own text")
			assert.NotContains(t, ans.body, h.fv.srv.URL)
		})
	}
	assert.Contains(t, plainError(&vaultError{status: 403}), "Permission denied")
	assert.Contains(t, plainError(&vaultError{status: 400, messages: []string{`unknown role "x"`}}), "role is not available")
	assert.Contains(t, plainError(errUnavailable), "cannot be reached")
	assert.NotContains(t, plainError(&vaultError{status: 500, messages: []string{"dial tcp 10.1.2.3:8200"}}), "10.1.2.3")
}

func TestDetailsDisableEnableRotateAndRevoke(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	first := a.mustCreate("svc")
	h.fv.use("acme", "svc", h.clock.now().Add(-3*time.Minute), "198.51.100.9", 42)

	d := a.get("/keys/svc")
	require.Equal(t, http.StatusOK, d.status)
	requireContains(t, d.body, "svc", "badge-active", "3 minutes ago", "198.51.100.9", "42", "Revoke API key", "Disable", "Rotate",
		"userpass-alice", "clusters:read", "No earlier keys")
	assert.Regexp(t, `<time datetime="[^"]+" title="\d+ \w+ \d{4}, \d\d:\d\d:\d\d UTC">3 minutes ago</time>`, d.body)

	csrf := a.csrf("/keys/svc")
	ans := a.post("/keys/svc/disable", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, ans.status)
	d = a.get("/keys/svc")
	requireContains(t, d.body, "badge-disabled", "is disabled", "Enable")
	a.post("/keys/svc/enable", url.Values{"csrf": {csrf}})
	assert.Equal(t, "active", h.fv.keys["acme"]["svc"].Status)

	ans = a.post("/keys/svc/rotate", url.Values{"csrf": {csrf}, "grace": {"24h"}})
	require.Equal(t, http.StatusOK, ans.status, ans.body)
	second := keyPattern.FindString(ans.body)
	require.NotEmpty(t, second)
	assert.NotEqual(t, first, second)
	d = a.get("/keys/svc")
	requireContains(t, d.body, "Keys in grace", "Revoke now", first[4:20])
	assert.NotContains(t, d.body, "No earlier keys")

	conf := a.get("/keys/svc/revoke")
	requireContains(t, conf.body, "Revoke API key “svc”?", "cannot be undone", "Cancel")
	ans = a.post("/keys/svc/revoke", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusOK, ans.status)
	requireContains(t, ans.body, "revoked", "badge-revoked")
	assert.Nil(t, h.fv.keys["acme"]["svc"])
	assert.Equal(t, http.StatusNotFound, a.get("/keys/svc").status)
}

// TestRevokeIsShownOnlyWhenVaultSaysRevoked: a 2xx answer without revoked=true
// is not a revocation, and the page must not claim the key is revoked.
func TestRevokeIsShownOnlyWhenVaultSaysRevoked(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	a.mustCreate("svc")
	h.fv.unconfirmedRevoke = true
	ans := a.post("/keys/svc/revoke", url.Values{"csrf": {a.csrf("/keys/svc")}})
	assert.Equal(t, http.StatusBadRequest, ans.status)
	assert.NotContains(t, ans.body, "badge-revoked")
	requireContains(t, ans.body, "The key service had a problem")
	assert.NotNil(t, h.fv.keys["acme"]["svc"])

	h.fv.unconfirmedRevoke = false
	h.fv.use("acme", "svc", h.clock.now().Add(-3*time.Minute), "198.51.100.9", 42)
	ans = a.post("/keys/svc/revoke", url.Values{"csrf": {a.csrf("/keys/svc")}})
	require.Equal(t, http.StatusOK, ans.status)
	requireContains(t, ans.body, "badge-revoked", "3 minutes ago")
}

func TestListFiltersAndPages(t *testing.T) {
	h := newHarness(t, nil)
	h.fv.maxKeys = 100
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	for i := range pageSize + 2 {
		a.create(map[string]string{"name": "k" + string(rune('a'+i/10)) + string(rune('0'+i%10))})
	}
	h.fv.keys["acme"]["ka0"].Status = "disabled"
	p1 := a.get("/keys")
	assert.Equal(t, pageSize, strings.Count(p1.body, `class="badge `))
	next := regexp.MustCompile(`href="(/keys\?[^"]*after=[^"]*)">Next page`).FindStringSubmatch(p1.body)
	require.NotNil(t, next, p1.body)
	p2 := a.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	assert.Equal(t, 2, strings.Count(p2.body, `class="badge `))
	assert.Contains(t, p2.body, "First page")
	assert.NotContains(t, p2.body, "Next page")

	f := a.get("/keys?status=disabled")
	assert.Equal(t, 1, strings.Count(f.body, `class="badge `))
	assert.Contains(t, f.body, "ka0")
	assert.Contains(t, a.get("/keys?status=expired").body, "No expired keys")
}

func TestReportsShowExpiringAndStaleKeys(t *testing.T) {
	h := newHarness(t, nil)
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	a.create(map[string]string{"name": "soon", "days": "3"})
	a.create(map[string]string{"name": "later", "expiry": "never"})
	h.fv.use("acme", "later", h.clock.now().Add(-100*24*time.Hour), "10.0.0.1", 1)
	// A minute on, "soon" is under 72 hours from expiry: "in 2 days" whatever
	// second the fake Vault stamped it in. (The fake keeps real time, to the
	// second; at the harness's own now, which is set when the harness starts,
	// the page read "in 3 days" whenever the real clock had passed a second
	// boundary by the create.)
	h.clock.add(time.Minute)
	r := a.get("/reports")
	require.Equal(t, http.StatusOK, r.status)
	requireContains(t, r.body, "Expiring soon", "Stale keys", `href="/keys/soon"`, `href="/keys/later"`, "in 2 days", "Revoke")
}

func TestSignOutAndExpiryRevokeTheVaultToken(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout = 10 * time.Minute })
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	require.Equal(t, 1, h.fv.tokenCount())
	ans := a.post("/signout", url.Values{"csrf": {a.csrf("/keys")}})
	require.Equal(t, http.StatusSeeOther, ans.status)
	assert.Equal(t, 0, h.fv.tokenCount(), "revoke-self at sign-out")
	assert.Equal(t, http.StatusSeeOther, a.get("/keys").status)

	b := h.agent(t)
	b.mustSignIn("bob", "bob-pw")
	require.Equal(t, 1, h.fv.tokenCount())
	h.clock.add(11 * time.Minute)
	h.console.sessions.sweep()
	assert.Equal(t, 0, h.fv.tokenCount(), "revoke-self when the session expires")
	assert.Equal(t, http.StatusSeeOther, b.get("/keys").status)

	c := h.agent(t)
	c.mustSignIn("alice", "alice-pw")
	h.console.Close()
	assert.Equal(t, 0, h.fv.tokenCount(), "revoke-self at shutdown")
}

func TestPagesHaveNoInlineScriptOrStyle(t *testing.T) {
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	err := fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := templateFS.ReadFile(p)
		require.NoError(t, err)
		assert.Nil(t, inline.FindIndex(b), "%s has inline script or style", p)
		return nil
	})
	require.NoError(t, err)
}

func TestRelativeTimes(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		-20 * time.Second: "just now", -3 * time.Minute: "3 minutes ago", -time.Minute: "1 minute ago",
		-5 * time.Hour: "5 hours ago", -72 * time.Hour: "3 days ago", 49 * time.Hour: "in 2 days",
		-200 * 24 * time.Hour: "on 13 Oct 2025",
	} {
		assert.Equal(t, want, relative(now.Add(d), now), d.String())
	}
	assert.False(t, momentOf("", "Never", now).Set)
	assert.False(t, momentOf("garbage", "Never", now).Set)
}

func TestSessionsEndAtTheirAbsoluteLifetimeEvenWhenBusy(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout, c.MaxLifetime = 10*time.Minute, 30*time.Minute })
	a := h.agent(t)
	a.mustSignIn("alice", "alice-pw")
	for range 3 {
		h.clock.add(9 * time.Minute)
		require.Equal(t, http.StatusOK, a.get("/keys").status, "active within the idle timeout")
	}
	h.clock.add(4 * time.Minute) // 31 minutes after sign-in
	assert.Equal(t, http.StatusSeeOther, a.get("/keys").status)
	assert.Equal(t, 0, h.fv.tokenCount(), "the expired session's token is revoked")
}
