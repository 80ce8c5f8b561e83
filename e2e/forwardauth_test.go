package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// The shipped proxy recipes (deploy/nginx, deploy/caddy) protect /api/ for
// workspace "prod" and permission "clusters:read", with the verifier at
// shippedVerifierAddr and the application at shippedAppAddr. Tests change only
// those addresses and the listen port.
const (
	shippedVerifierAddr = "127.0.0.1:8080"
	shippedAppAddr      = "127.0.0.1:3000"
)

// forwardAuthStack is a real Vault with keys, a real verifier and a recording
// upstream application: what a proxy recipe is put in front of.
type forwardAuthStack struct {
	v        *vaulttest.Vault
	ver      *verifierProc
	app      *httptest.Server
	good     string // workspace prod, role ops (clusters:read)
	otherWS  string // workspace dev-eu
	noPerm   string // workspace prod, role billing (billing:read)
	mu       sync.Mutex
	upstream []http.Header
}

func startForwardAuthStack(t *testing.T) *forwardAuthStack {
	t.Helper()
	s := &forwardAuthStack{v: vaulttest.Start(t)}
	for role, data := range map[string]map[string]interface{}{
		"ops":     {"permissions": "clusters:read", "allowed_workspaces": "prod,dev-*"},
		"billing": {"permissions": "billing:read", "allowed_workspaces": "prod"},
	} {
		_, err := s.v.Client.Logical().Write("apikeys/roles/"+role, data)
		require.NoError(t, err)
	}
	s.good = issue(t, s.v, "good", map[string]interface{}{"role": "ops", "workspace": "prod"})
	s.otherWS = issue(t, s.v, "other", map[string]interface{}{"role": "ops", "workspace": "dev-eu"})
	s.noPerm = issue(t, s.v, "billing", map[string]interface{}{"role": "billing", "workspace": "prod"})
	// The proxy is on loopback: trust it for X-Forwarded-For, as the docs say.
	s.ver = startVerifier(t, s.v, s.v.Addr, "-trusted-proxies", "127.0.0.1/32")
	s.app = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.upstream = append(s.upstream, r.Header.Clone())
		s.mu.Unlock()
		fmt.Fprintln(w, "hello from upstream")
	}))
	t.Cleanup(s.app.Close)
	return s
}

// template replaces the shipped addresses with this stack's.
func (s *forwardAuthStack) template(t *testing.T, shipped string, more ...string) string {
	t.Helper()
	raw, err := os.ReadFile(shipped)
	require.NoError(t, err)
	conf := string(raw)
	pairs := append([]string{shippedVerifierAddr, strings.TrimPrefix(s.ver.URL, "http://"),
		shippedAppAddr, strings.TrimPrefix(s.app.URL, "http://")}, more...)
	for i := 0; i < len(pairs); i += 2 {
		require.Contains(t, conf, pairs[i], "the shipped %s no longer has %q", shipped, pairs[i])
		conf = strings.ReplaceAll(conf, pairs[i], pairs[i+1])
	}
	return conf
}

// startProxy runs a proxy binary in dir until the test ends and waits until base answers.
func startProxy(t *testing.T, cmd *exec.Cmd, logPath, base string) {
	t.Helper()
	out, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { vaulttest.StopProcess(cmd, done); out.Close() })
	ok := waitFor(15*time.Second, func() bool {
		resp, err := http.Get(base + "/healthz-probe")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if !ok {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("%s did not start:\n%s", cmd.Path, log)
	}
}

// check runs the same cases against any proxy recipe at base.
func (s *forwardAuthStack) check(t *testing.T, base string) {
	get := func(key string, extra map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/api/items", nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		for k, val := range extra {
			req.Header.Set(k, val)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}

	resp := get("", nil)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "no key")
	assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Bearer", "401 carries the verifier's WWW-Authenticate")
	assert.Equal(t, http.StatusUnauthorized, get("vak_not_a_key", nil).StatusCode, "junk key")

	s.mu.Lock()
	s.upstream = nil
	s.mu.Unlock()
	// A client smuggling identity headers must not reach the upstream with them,
	// nor widen what the route requires.
	// The recipes pin no tenant: a client naming one (not its key's) would get
	// TENANT_MISMATCH (403) if the proxy let the header through.
	resp = get(s.good, map[string]string{"X-Apikey-Id": "forged", "X-Apikey-Role": "admin",
		"X-Apikey-Permissions": "*", "X-Apikey-Workspace": "dev-eu", "X-Apikey-Tenant": "forged-tenant"})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "good key")
	s.mu.Lock()
	require.Len(t, s.upstream, 1, "exactly one request reached the upstream")
	h := s.upstream[0]
	s.mu.Unlock()
	assert.Len(t, h.Get("X-Apikey-Id"), 16)
	assert.NotEqual(t, "forged", h.Get("X-Apikey-Id"))
	assert.Equal(t, "good", h.Get("X-Apikey-Name"))
	assert.Equal(t, "ops", h.Get("X-Apikey-Role"))
	assert.Equal(t, "prod", h.Get("X-Apikey-Workspace"))
	assert.Equal(t, "acme", h.Get("X-Apikey-Tenant"), "the tenant the application sees is the key's")
	assert.Empty(t, h.Get("X-Apikey-Permissions"), "the client's permission header is dropped")
	assert.Empty(t, h.Get("Authorization"), "the key does not reach the application")

	assert.Equal(t, http.StatusForbidden, get(s.otherWS, nil).StatusCode, "key of another workspace")
	assert.Equal(t, http.StatusForbidden, get(s.noPerm, nil).StatusCode, "key without the route's permission")
	// A client asking for another workspace cannot make a mismatching key pass.
	assert.Equal(t, http.StatusForbidden, get(s.otherWS, map[string]string{"X-Apikey-Workspace": "dev-eu"}).StatusCode)

	_, err := s.v.Client.Logical().Delete("apikeys/tenants/acme/keys/good")
	require.NoError(t, err)
	assert.True(t, waitFor(2*time.Second, func() bool { return get(s.good, nil).StatusCode == http.StatusUnauthorized }), "401 after revoke")

	// Fail closed, and say so: 503, not the proxy's 500 or 502.
	s.ver.stop()
	resp = get(s.otherWS, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "verifier down")
	fileLacks(t, s.ver.Log, []string{s.good[len(s.good)-49:], s.otherWS[len(s.otherWS)-49:]})
}

// proxyBin finds a Debian proxy binary: $env, then the package's path, then PATH.
// `make test` installs it when missing (scripts/ensure-packages cmd:pkg).
func proxyBin(t *testing.T, cmd, env, debianPath, ensure string) string {
	t.Helper()
	for _, p := range []string{os.Getenv(env), debianPath} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath(cmd); err == nil {
		return p
	}
	t.Fatalf("%s is not installed: run `make test` (it installs it) or `scripts/ensure-packages %s`", cmd, ensure)
	return ""
}
