package console

// The browser walk against the real thing: a Vault dev server with the plugin,
// tenant admins signed in through userpass under policies/tenant-admin.hcl, and
// the apikeys-verifier binary answering for the key the page showed.

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// realStack is Vault with the plugin, two tenant admins, the verifier and the
// console over TLS (its cookies are Secure).
type realStack struct {
	vault    *vaulttest.Vault
	verifier *vaulttest.Verifier
	console  *httptest.Server
	log      *syncBuffer
}

func startRealStack(t *testing.T) *realStack {
	t.Helper()
	s := &realStack{vault: vaulttest.Start(t), log: &syncBuffer{}}
	v := s.vault
	for role, perms := range map[string]string{"admin": "*", "developer": "clusters:read"} {
		_, err := v.Client.Logical().Write("apikeys/roles/"+role, map[string]interface{}{
			"permissions": perms, "allowed_workspaces": "*", "max_ttl": "2160h"})
		require.NoError(t, err)
	}
	v.AddTenantAdmin(t, "alice", "alice-pw-long", "acme", "admin")
	v.AddTenantAdmin(t, "bob", "bob-pw-long", "globex", "admin")

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "verifier-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(v.TokenFromFile(t, "policies/verifier.hcl")), 0o600))
	s.verifier = vaulttest.StartVerifier(t, dir, v.Addr, tokenFile)

	c, err := New(Config{VaultAddr: v.Addr, Logger: slog.New(slog.NewTextHandler(s.log, nil))})
	require.NoError(t, err)
	s.console = httptest.NewTLSServer(c.Handler())
	t.Cleanup(func() { s.console.Close(); c.Close() })
	return s
}

// verify asks the verifier about key, pinned to tenant as a proxy would pin
// it, and answers its code.
func (s *realStack) verify(t *testing.T, key, tenant string) string {
	t.Helper()
	body, err := json.Marshal(map[string]string{"key": key, "tenant": tenant})
	require.NoError(t, err)
	resp, err := http.Post(s.verifier.URL+"/v1/verify", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Code string `json:"code"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Code
}

// awaitCode polls the verifier until it answers want (the feed carries a
// revocation within milliseconds; the bound is only a safety net).
func (s *realStack) awaitCode(t *testing.T, key, tenant, want string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = s.verify(t, key, tenant); got == want {
			return
		}
	}
	t.Fatalf("the verifier answers %s, want %s", got, want)
}

func TestBrowserRealVaultTenantAdminIssuesAndRevokes(t *testing.T) {
	findChromium(t)
	s := startRealStack(t)

	// globex's admin has a key of his own, which alice must never see.
	bob := s.vault.Login(t, "bob", "bob-pw-long")
	sec, err := bob.Logical().Write("apikeys/tenants/globex/keys/globex-billing", map[string]interface{}{"role": "developer"})
	require.NoError(t, err)
	bobKey := sec.Data["key"].(string)
	require.Equal(t, "VALID", s.verify(t, bobKey, "globex"))

	b := newBrowser(t, s.console.URL)
	b.signIn("alice", "alice-pw-long")
	require.Contains(t, b.html(), "No API keys yet", "acme has no keys, and globex's are not shown")
	assert.NotContains(t, b.html(), "globex-billing")

	// Create: name, role from the plugin's list, then "Generate key".
	name, nameOpt := control("textbox", "Name")
	b.do("create-form",
		b.click("link", "Create API key"),
		chromedp.SendKeys(name, "ci-deploy", nameOpt),
		chromedp.SetValue(chromedp.ID("role"), "developer"),
	)
	b.do("key-shown-once", b.click("button", "Generate key"))
	key, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.ID("new-key")))
	require.NoError(t, err, "the key is shown: %s", b.html())
	require.Regexp(t, `^vak_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}$`, key)

	// The key from the page works at the verifier.
	assert.Equal(t, "VALID", s.verify(t, key, "acme"))

	// Done: gone from the page; the list shows the key with its creator.
	b.do("after-done", b.click("link", "Done"))
	page := b.html()
	assert.NotContains(t, page, key)
	assert.Contains(t, page, "ci-deploy")
	assert.Contains(t, b.eval(`document.querySelector("table.keys tbody td:nth-child(3)").textContent`), "alice",
		"Created by names the signed-in person")
	assert.NotContains(t, page, "globex-billing")

	// Details sheet, then "Revoke API key" with its confirmation.
	b.do("details", b.click("link", "ci-deploy"))
	assert.Contains(t, b.html(), "acme")
	assert.Contains(t, b.html(), "Every permission of the role", "permissions \"*\" said in words")
	b.do("revoke-confirm", b.click("link", "Revoke API key"))
	assert.Contains(t, b.html(), "cannot be undone")
	b.do("revoked", b.click("button", "Revoke API key"))
	assert.Contains(t, b.html(), "badge-revoked")
	s.awaitCode(t, key, "acme", "REVOKED")

	// The other tenant's key, by URL: not there for alice, and untouched.
	b.do("other-tenant-details", chromedp.Navigate(b.base+"/keys/globex-billing"))
	assert.Contains(t, b.html(), "There is no API key named")
	assert.Equal(t, "VALID", s.verify(t, bobKey, "globex"))

	// A request without the CSRF token is refused by the console, and nothing
	// reaches Vault.
	st, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](
		`fetch("/keys", {method: "POST", body: new URLSearchParams({name: "forged", role: "developer", expiry: "never", ips: "all"})}).then(r => String(r.status))`,
		chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	assert.Equal(t, "403", st)
	forged, err := s.vault.Client.Logical().Read("apikeys/tenants/acme/keys/forged")
	require.NoError(t, err)
	assert.Nil(t, forged, "no key was issued without the CSRF token")

	// bob signs in to globex: his key, not acme's.
	b.do("signed-out", b.click("button", "Sign out"))
	b.signIn("bob", "bob-pw-long")
	assert.Contains(t, b.html(), "globex-billing")
	assert.NotContains(t, b.html(), "ci-deploy")

	assert.NotContains(t, s.log.String(), key[21:], "the console never logs a key")
}
