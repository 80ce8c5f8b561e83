package verifier_test

// Integration tests against a real Vault dev server with real transit and the
// real plugin (internal/vaulttest). The verifier runs with a token of
// policies/verifier.hcl, never root; root only administers keys and roles.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/verifier"
	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

// propagation is the DESIGN §7 goal: a change stops a key within 100 ms of the
// Vault write returning. Tests log how long it took but assert only that the
// change arrives (within, bounded at 5 s: long before any max-age refresh, so only
// the feed can bring it); the time itself is measured by `make bench` on a quiet
// machine, never asserted here, where a loaded CI core would make it flaky.
const propagation = 100 * time.Millisecond

type stack struct {
	vault    *vaulttest.Vault
	verifier *verifier.Verifier
	url      string // the verifier's HTTP API
	token    string // the verifier's own Vault token
	audit    string // audit log path
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startVault starts a Vault dev server with the plugin; integration tests are
// skipped under -short (make unit).
func startVault(t *testing.T) *vaulttest.Vault {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a real Vault; skipped under -short")
	}
	return vaulttest.Start(t)
}

// startStack runs Vault with the plugin, the role "ops", and a verifier with
// a least-privilege token, serving HTTP on a loopback port.
func startStack(t *testing.T, tweak func(*verifier.Config)) *stack {
	t.Helper()
	vt := startVault(t)
	s := &stack{vault: vt, token: vt.TokenFromFile(t, "policies/verifier.hcl"), logs: &syncBuffer{}}
	s.audit = filepath.Join(t.TempDir(), "audit.log")
	admin(t, vt, "apikeys/roles/ops", map[string]any{
		"permissions": "clusters:read,nodes:*", "allowed_workspaces": "prod,dev-*",
		"allowed_cidrs": "127.0.0.0/8,10.0.0.0/8", "max_ttl": "2160h",
	})
	cfg := verifier.Config{
		VaultAddrs: []string{vt.Addr}, VaultToken: s.token, AuditLog: s.audit,
		UsageFlush: 200 * time.Millisecond,
		Logger:     hclog.New(&hclog.LoggerOptions{Output: s.logs, Level: hclog.Debug, JSONFormat: true}),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	v, err := verifier.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx); close(done) }()
	srv := httptest.NewServer(v.Handler())
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
		_ = v.Close()
		if t.Failed() {
			t.Logf("verifier log:\n%s", s.logs.String())
		}
	})
	require.Eventually(t, func() bool { return v.Status().Ready }, 10*time.Second, 10*time.Millisecond, "verifier never followed the feed:\n%s", s.logs.String())
	s.verifier, s.url = v, srv.URL
	return s
}

func admin(t *testing.T, vt *vaulttest.Vault, path string, data map[string]any) map[string]any {
	t.Helper()
	sec, err := vt.Client.Logical().Write(path, data)
	require.NoError(t, err, path)
	if sec == nil {
		return nil
	}
	return sec.Data
}

func (s *stack) issue(t *testing.T, name string, fields map[string]any) string {
	t.Helper()
	if fields == nil {
		fields = map[string]any{}
	}
	fields["role"] = "ops"
	data := admin(t, s.vault, "apikeys/tenants/acme/keys/"+name, fields)
	key, _ := data["key"].(string)
	require.NotEmpty(t, key, "create returned no key")
	return key
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// verify posts body to /v1/verify and returns the status and the code.
func (s *stack) verify(t *testing.T, body map[string]any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	return s.post(t, b)
}

func (s *stack) post(t *testing.T, body []byte) (int, string) {
	t.Helper()
	resp, err := httpClient.Post(s.url+"/v1/verify", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Code
}

func (s *stack) code(t *testing.T, key string, extra map[string]any) string {
	t.Helper()
	body := map[string]any{"key": key}
	for k, v := range extra {
		body[k] = v
	}
	status, code := s.verify(t, body)
	require.Equal(t, http.StatusOK, status, "code %s", code)
	return code
}

// within polls until key answers want, and returns how long that took; a time
// over goal is logged, not failed (see propagation).
func (s *stack) within(t *testing.T, key string, extra map[string]any, want string, goal time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if got := s.code(t, key, extra); got == want {
			d := time.Since(start)
			if d > goal {
				t.Logf("%s seen after %s, over the %s goal", want, d, goal)
			}
			return d
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("never answered %s", want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestIntegrationEveryCode(t *testing.T) {
	s := startStack(t, nil)
	vt := s.vault
	prod := s.issue(t, "prod", map[string]any{"workspace": "prod", "metadata": map[string]string{"team": "sre"}})
	dev := s.issue(t, "dev", map[string]any{"workspace": "dev-eu"})
	wide := s.issue(t, "wide", nil)
	narrow := s.issue(t, "narrow", map[string]any{"allowed_cidrs": "10.1.0.0/16"})
	disabled := s.issue(t, "disabled", nil)
	admin(t, vt, "apikeys/tenants/acme/keys/disabled/disable", nil)
	revoked := s.issue(t, "revoked", nil)
	_, err := vt.Client.Logical().Delete("apikeys/tenants/acme/keys/revoked")
	require.NoError(t, err)
	short := s.issue(t, "short", map[string]any{"ttl": "2s"})
	require.Equal(t, "VALID", s.code(t, short, nil), "cached before it expires")
	unknown, err := token.Generate("vak")
	require.NoError(t, err)
	real, err := token.Parse(prod)
	require.NoError(t, err)
	forged, err := token.Generate(real.Prefix)
	require.NoError(t, err)
	forged.KeyID = real.KeyID

	for _, tc := range []struct {
		name  string
		key   string
		extra map[string]any
		want  string
	}{
		{"VALID", prod, nil, "VALID"},
		{"VALID workspace+permission", prod, map[string]any{"workspace": "prod", "permissions": []string{"clusters:read", "nodes:drain"}}, "VALID"},
		{"VALID tenant-wide key", wide, map[string]any{"workspace": "dev-us"}, "VALID"},
		{"INVALID_FORMAT checksum", prod[:len(prod)-6] + "AAAAAA", nil, "INVALID_FORMAT"},
		{"INVALID_FORMAT junk", "hello", nil, "INVALID_FORMAT"},
		{"NOT_FOUND", unknown.String(), nil, "NOT_FOUND"},
		{"NOT_FOUND forged secret", forged.String(), nil, "NOT_FOUND"},
		{"REVOKED", revoked, nil, "REVOKED"},
		{"DISABLED", disabled, nil, "DISABLED"},
		{"IP_NOT_ALLOWED role", prod, map[string]any{"client_ip": "192.0.2.7"}, "IP_NOT_ALLOWED"},
		{"IP_NOT_ALLOWED key", narrow, map[string]any{"client_ip": "10.2.0.1"}, "IP_NOT_ALLOWED"},
		{"VALID key CIDR", narrow, map[string]any{"client_ip": "10.1.0.1"}, "VALID"},
		{"WORKSPACE_MISMATCH", dev, map[string]any{"workspace": "prod"}, "WORKSPACE_MISMATCH"},
		{"WORKSPACE_MISMATCH role", wide, map[string]any{"workspace": "staging"}, "WORKSPACE_MISMATCH"},
		{"INSUFFICIENT_PERMISSIONS", prod, map[string]any{"permissions": []string{"clusters:delete"}}, "INSUFFICIENT_PERMISSIONS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, s.code(t, tc.key, tc.extra))
			assert.Equal(t, tc.want, s.code(t, tc.key, tc.extra), "again, from the cache")
		})
	}
	t.Run("EXPIRED on a cached key", func(t *testing.T) {
		s.within(t, short, nil, "EXPIRED", 3*time.Second)
	})
	t.Run("400s", func(t *testing.T) {
		for name, body := range map[string]string{
			"malformed JSON": `{not json`, "missing key": `{"workspace":"prod"}`,
			"over 16 KiB": `{"key":"` + strings.Repeat("a", 20_000) + `"}`,
		} {
			status, _ := s.post(t, []byte(body))
			assert.Equal(t, http.StatusBadRequest, status, name)
		}
	})
}

func TestIntegrationRevocationPropagation(t *testing.T) {
	s := startStack(t, nil)
	const n = 100
	keys := make([]string, n)
	for i := range keys {
		keys[i] = s.issue(t, fmt.Sprintf("hot-%03d", i), nil)
	}
	for _, k := range keys { // hot: cached
		require.Equal(t, "VALID", s.code(t, k, nil))
		require.Equal(t, "VALID", s.code(t, k, nil))
	}
	lat := make([]time.Duration, n)
	for i, k := range keys {
		_, err := s.vault.Client.Logical().Delete(fmt.Sprintf("apikeys/tenants/acme/keys/hot-%03d", i))
		require.NoError(t, err)
		lat[i] = s.within(t, k, nil, "REVOKED", propagation)
	}
	slices.Sort(lat)
	p50, p99 := lat[n/2], lat[n*99/100-1]
	t.Logf("revocation → REVOKED over %d keys: p50 %s, p99 %s, max %s", n, p50, p99, lat[n-1])
	fmt.Printf("revocation propagation (%d keys): p50 %s p99 %s max %s\n", n, p50, p99, lat[n-1])
	if lat[n-1] > propagation {
		t.Logf("slowest revocation %s is over the %s goal: see make bench for the measurement", lat[n-1], propagation)
	}
}

func TestIntegrationRoleDowngradeAndDisableEnable(t *testing.T) {
	s := startStack(t, nil)
	key := s.issue(t, "k", map[string]any{"workspace": "prod"})
	need := map[string]any{"permissions": []string{"clusters:read"}}
	require.Equal(t, "VALID", s.code(t, key, need))

	admin(t, s.vault, "apikeys/roles/ops", map[string]any{"permissions": "nodes:*"})
	t.Logf("downgrade seen after %s", s.within(t, key, need, "INSUFFICIENT_PERMISSIONS", propagation))
	admin(t, s.vault, "apikeys/roles/ops", map[string]any{"permissions": "clusters:read,nodes:*"})
	t.Logf("upgrade back seen after %s", s.within(t, key, need, "VALID", propagation))

	admin(t, s.vault, "apikeys/tenants/acme/keys/k/disable", nil)
	t.Logf("disable seen after %s", s.within(t, key, need, "DISABLED", propagation))
	admin(t, s.vault, "apikeys/tenants/acme/keys/k/enable", nil)
	t.Logf("enable seen after %s", s.within(t, key, need, "VALID", propagation))
	admin(t, s.vault, "apikeys/tenants/acme/keys/k/disable", nil)
	t.Logf("disable again seen after %s", s.within(t, key, need, "DISABLED", propagation))
}

func TestIntegrationForwardAuthAndMiddleware(t *testing.T) {
	s := startStack(t, nil)
	key := s.issue(t, "app", map[string]any{"workspace": "prod"})
	auth := func(headers map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/v1/auth", nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	resp := auth(map[string]string{"Authorization": "Bearer " + key, "X-Apikey-Workspace": "prod", "X-Apikey-Permissions": "clusters:read"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("X-Apikey-Id"))
	assert.Equal(t, "ops", resp.Header.Get("X-Apikey-Role"))
	assert.Equal(t, "prod", resp.Header.Get("X-Apikey-Workspace"))
	assert.Equal(t, http.StatusForbidden, auth(map[string]string{"X-API-Key": key, "X-Apikey-Workspace": "dev-eu"}).StatusCode)
	resp = auth(nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.NotEmpty(t, resp.Header.Get("WWW-Authenticate"))

	// The middleware in front of an app handler, against this verifier.
	var seen middleware.Key
	app := httptest.NewServer(middleware.Middleware(middleware.NewClient(s.url), middleware.RequirePermissions("clusters:read"))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen, _ = middleware.KeyFromContext(r.Context())
		})))
	defer app.Close()
	call := func() int {
		req, _ := http.NewRequest(http.MethodGet, app.URL, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, call())
	assert.Equal(t, "app", seen.Name, "the handler sees the key")

	_, err := s.vault.Client.Logical().Delete("apikeys/tenants/acme/keys/app")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return call() == http.StatusUnauthorized }, time.Second, 5*time.Millisecond, "revoked → 401 through the middleware")
	assert.Equal(t, http.StatusUnauthorized, auth(map[string]string{"X-API-Key": key}).StatusCode, "revoked → 401 at forward-auth")
}

// TestRealFailClosed seals Vault (it stays sealed until unsealed, unlike a
// stopped dev server, which would lose its data): cached verdicts are served
// for stale-if-error, then 503; after unsealing, answers resume within 5 s.
func TestIntegrationFailClosed(t *testing.T) {
	// The window counts from the last successful feed poll, which can be up to
	// one poll wait before the seal: keep the wait short to measure it.
	const stale, wait = 3 * time.Second, 500 * time.Millisecond
	s := startStack(t, func(c *verifier.Config) { c.StaleIfError, c.FeedWait = stale, wait })
	key := s.issue(t, "k", nil)
	require.Equal(t, "VALID", s.code(t, key, nil))
	unsealKey := s.vault.UnsealKey(t)

	require.NoError(t, s.vault.Client.Sys().Seal())
	sealed := time.Now()
	status, code := s.verify(t, map[string]any{"key": key})
	if time.Since(sealed) < stale-wait {
		assert.Equal(t, http.StatusOK, status, "cached verdicts are served while stale")
		assert.Equal(t, "VALID", code)
	}
	require.Eventually(t, func() bool { st, _ := s.verify(t, map[string]any{"key": key}); return st == 503 },
		stale+wait+3*time.Second, 20*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(sealed), stale-wait-100*time.Millisecond, "not before stale-if-error")
	resp, err := httpClient.Get(s.url + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	_, err = s.vault.Client.Sys().Unseal(unsealKey)
	require.NoError(t, err)
	unsealed := time.Now()
	require.Eventually(t, func() bool { st, c := s.verify(t, map[string]any{"key": key}); return st == 200 && c == "VALID" },
		5*time.Second, 20*time.Millisecond, "answers again within 5 s without a restart")
	t.Logf("answering again %s after unseal", time.Since(unsealed))
}

func TestIntegrationLeastPrivilegeUsageAndNoLeaks(t *testing.T) {
	s := startStack(t, nil)
	key := s.issue(t, "k", nil)
	for range 20 {
		require.Equal(t, "VALID", s.code(t, key, map[string]any{"client_ip": "10.0.0.7"}))
	}

	// Usage arrives in batches, attributed to the client address.
	require.Eventually(t, func() bool {
		sec, err := s.vault.Client.Logical().Read("apikeys/tenants/acme/keys/k")
		require.NoError(t, err)
		return fmt.Sprint(sec.Data["use_count"]) == "20" && sec.Data["last_used_from"] == "10.0.0.7"
	}, 5*time.Second, 50*time.Millisecond, "usage reported")

	// The verifier's token can do what the verifier needs, and nothing more.
	c, err := s.vault.Client.Clone()
	require.NoError(t, err)
	c.SetToken(s.token)
	for _, denied := range []func() error{
		func() error {
			_, err := c.Logical().Write("apikeys/tenants/acme/keys/evil", map[string]any{"role": "ops"})
			return err
		},
		func() error { _, err := c.Logical().Read("apikeys/config"); return err },
		func() error { _, err := c.Logical().Delete("apikeys/tenants/acme/keys/k"); return err },
		func() error { _, err := c.Logical().List("apikeys/tenants/acme/keys"); return err },
		func() error {
			_, err := c.Logical().Write("transit/encrypt/apikeys", map[string]any{"plaintext": "eA=="})
			return err
		},
		func() error {
			_, err := c.Logical().Write("apikeys/roles/ops", map[string]any{"permissions": "*"})
			return err
		},
	} {
		err := denied()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "permission denied")
	}

	// No secret anywhere the verifier writes.
	tok, err := token.Parse(key)
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	audit, err := os.ReadFile(s.audit)
	require.NoError(t, err)
	assert.NotEmpty(t, audit)
	assert.NotContains(t, string(audit), tok.Secret)
	assert.NotContains(t, s.logs.String(), tok.Secret)
	resp, err := httpClient.Get(s.url + "/metrics")
	require.NoError(t, err)
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	assert.NotContains(t, metrics.String(), tok.Secret)
	assert.Contains(t, metrics.String(), "# TYPE apikeys_verifier_decisions_total counter")
}

func TestIntegrationAppRoleAndTokenFile(t *testing.T) {
	vt := startVault(t)
	policy, err := os.ReadFile(filepath.Join(vaulttest.Root(), "policies", "verifier.hcl"))
	require.NoError(t, err)
	require.NoError(t, vt.Client.Sys().PutPolicy("apikeys-verifier", string(policy)))
	require.NoError(t, vt.Client.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}))
	admin(t, vt, "auth/approle/role/verifier", map[string]any{"token_policies": "apikeys-verifier", "token_ttl": "1h", "token_no_default_policy": true})
	sec, err := vt.Client.Logical().Read("auth/approle/role/verifier/role-id")
	require.NoError(t, err)
	roleID := sec.Data["role_id"].(string)
	secretID := admin(t, vt, "auth/approle/role/verifier/secret-id", nil)["secret_id"].(string)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte(secretID+"\n"), 0o600))
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(vt.TokenFromFile(t, "policies/verifier.hcl")), 0o600))
	admin(t, vt, "apikeys/roles/ops", map[string]any{"permissions": "clusters:read"})
	key := admin(t, vt, "apikeys/tenants/acme/keys/k", map[string]any{"role": "ops"})["key"].(string)

	for name, cfg := range map[string]verifier.Config{
		"approle":    {AppRoleRoleID: roleID, AppRoleSecretIDFile: secretFile},
		"token file": {VaultTokenFile: tokenFile},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.VaultAddrs = []string{vt.Addr}
			v, err := verifier.New(cfg)
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = v.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			require.Eventually(t, func() bool { return v.Status().Ready }, 10*time.Second, 10*time.Millisecond)
			verdict, err := v.Check(ctx, verifier.Request{Key: key, ClientIP: netip.MustParseAddr("127.0.0.1")})
			require.NoError(t, err)
			assert.Equal(t, verifier.CodeValid, verdict.Code)
		})
	}
}

// Against the real Vault: the verifier looks keys up with reads (Vault's audit
// log shows the operation), and a token whose policy grants only the write on
// the lookup path (the policy before reads were used) still verifies, through
// the write, with one warning that says what to grant and no new login.
func TestIntegrationLookupIsAReadWithAWriteFallback(t *testing.T) {
	vt := startVault(t)
	auditLog := filepath.Join(t.TempDir(), "vault-audit.log")
	require.NoError(t, vt.Client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditLog}}))
	admin(t, vt, "apikeys/roles/ops", map[string]any{"permissions": "clusters:read"})
	policy, err := os.ReadFile(filepath.Join(vaulttest.Root(), "policies", "verifier.hcl"))
	require.NoError(t, err)
	writeOnly := strings.Replace(string(policy), `path "apikeys/lookup" {
  capabilities = ["read", "update"]`, `path "apikeys/lookup" {
  capabilities = ["update"]`, 1)
	require.NotEqual(t, string(policy), writeOnly, "the lookup grant moved in policies/verifier.hcl")

	for i, tc := range []struct {
		policy string
		ops    []string // of the requests to apikeys/lookup, in order
		warned bool
	}{
		{string(policy), []string{"read", "read"}, false},
		{writeOnly, []string{"read", "update", "update"}, true},
	} {
		var logs syncBuffer
		cfg := verifier.Config{VaultAddrs: []string{vt.Addr}, VaultToken: vt.Token(t, tc.policy),
			Logger: hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Warn})}
		v, err := verifier.New(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = v.Run(ctx); close(done) }()
		require.Eventually(t, func() bool { return v.Status().Ready }, 10*time.Second, 10*time.Millisecond)
		before := len(lookupOps(t, auditLog))
		for j := range 2 { // two misses: the second shows what the first decided
			key := admin(t, vt, fmt.Sprintf("apikeys/tenants/acme/keys/k%d-%d", i, j), map[string]any{"role": "ops"})["key"].(string)
			verdict, err := v.Check(ctx, verifier.Request{Key: key, ClientIP: netip.MustParseAddr("127.0.0.1")})
			require.NoError(t, err)
			assert.Equal(t, verifier.CodeValid, verdict.Code)
		}
		cancel()
		<-done
		assert.Equal(t, tc.ops, lookupOps(t, auditLog)[before:], "policy %d", i)
		assert.Equal(t, tc.warned, strings.Contains(logs.String(), "lookups are sent as writes"), "policy %d: %s", i, logs.String())
		assert.NotContains(t, logs.String(), "refused the token", "policy %d: a refused read must not replace the token", i)
	}
}

// lookupOps reads Vault's file audit log: the operation of every request to
// apikeys/lookup, in order.
func lookupOps(t *testing.T, path string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var ops []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e struct {
			Type    string `json:"type"`
			Request struct {
				Operation string `json:"operation"`
				Path      string `json:"path"`
			} `json:"request"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		if e.Type == "request" && e.Request.Path == "apikeys/lookup" {
			ops = append(ops, e.Request.Operation)
		}
	}
	return ops
}

// TestIntegrationRevokedFormAnswersAsALookup: a key revoked while cached is
// answered from its revoked form (no lookup); a verifier that never cached it
// answers by lookup of the revoked record. The whole answer must be the same,
// for the right secret, a forged one, and tenants pinned or not.
func TestIntegrationRevokedFormAnswersAsALookup(t *testing.T) {
	s := startStack(t, nil)
	key := s.issue(t, "rev", map[string]any{
		"workspace": "prod", "ttl": "48h", "allowed_cidrs": "127.0.0.0/8", "metadata": map[string]any{"team": "sre"},
	})
	tok, err := token.Parse(key)
	require.NoError(t, err)
	forged := tok
	forged.Secret = strings.Repeat("x", token.SecretLen)
	require.Equal(t, "VALID", s.code(t, key, map[string]any{"permissions": []string{"clusters:read"}}))
	_, err = s.vault.Client.Logical().Delete("apikeys/tenants/acme/keys/rev")
	require.NoError(t, err)
	s.within(t, key, nil, "REVOKED", propagation)

	// A second verifier on the same Vault, which has never seen the key.
	fresh, err := verifier.New(verifier.Config{VaultAddrs: []string{s.vault.Addr}, VaultToken: s.token,
		AuditLog: filepath.Join(t.TempDir(), "audit.log"), Logger: hclog.NewNullLogger()})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = fresh.Run(ctx); close(done) }()
	srv := httptest.NewServer(fresh.Handler())
	defer func() { srv.Close(); cancel(); <-done; _ = fresh.Close() }()
	require.Eventually(t, func() bool { return fresh.Status().Ready }, 10*time.Second, 10*time.Millisecond)

	answer := func(url string, body map[string]any) string {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		resp, err := httpClient.Post(url+"/v1/verify", "application/json", bytes.NewReader(b))
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return fmt.Sprintf("%d %s", resp.StatusCode, out)
	}
	for _, body := range []map[string]any{
		{"key": key}, {"key": key, "tenant": "acme"}, {"key": key, "tenant": "globex"},
		{"key": key, "workspace": "dev-eu", "permissions": []string{"nodes:drain"}},
		{"key": forged.String()}, {"key": forged.String(), "tenant": "acme"},
	} {
		cachedAnswer := answer(s.url, body)
		assert.Equal(t, answer(srv.URL, body), cachedAnswer, "tenant %v", body["tenant"])
	}
	assert.Contains(t, answer(s.url, map[string]any{"key": key}), `"code":"REVOKED"`)
}
