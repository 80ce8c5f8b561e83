package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// nginxBin finds Debian's nginx; `make test` installs nginx-light when missing.
func nginxBin(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("NGINX_BIN"), "/usr/sbin/nginx"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	t.Fatal("nginx is not installed: run `make test` (it installs nginx-light) or `scripts/ensure-packages nginx:nginx-light`")
	return ""
}

const nginxConf = `
%s
worker_processes 1;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
  access_log %[2]s/access.log;
  client_body_temp_path %[2]s/tmp/body;
  proxy_temp_path %[2]s/tmp/proxy;
  fastcgi_temp_path %[2]s/tmp/fastcgi;
  uwsgi_temp_path %[2]s/tmp/uwsgi;
  scgi_temp_path %[2]s/tmp/scgi;
  upstream verifier { server %[3]s; }
  upstream app { server %[4]s; }
  server {
    listen 127.0.0.1:%[5]d;
    location = /_auth {
      internal;
      proxy_pass http://verifier/v1/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Apikey-Workspace $apikey_workspace;
      proxy_set_header X-Apikey-Permissions $apikey_permissions;
    }
    location /prod/ {
      set $apikey_workspace prod;
      set $apikey_permissions "clusters:read";
      auth_request /_auth;
      auth_request_set $key_id $upstream_http_x_apikey_id;
      auth_request_set $key_role $upstream_http_x_apikey_role;
      auth_request_set $key_ws $upstream_http_x_apikey_workspace;
      proxy_set_header X-Apikey-Id $key_id;
      proxy_set_header X-Apikey-Role $key_role;
      proxy_set_header X-Apikey-Workspace $key_ws;
      proxy_pass http://app;
    }
  }
}
`

// TestNginxAuthRequest puts Debian's nginx in front of a small upstream with
// auth_request to the verifier's /v1/auth.
func TestNginxAuthRequest(t *testing.T) {
	bin := nginxBin(t)
	v := vaulttest.Start(t)
	_, err := v.Client.Logical().Write("apikeys/roles/ops", map[string]interface{}{"permissions": "clusters:read", "allowed_workspaces": "prod,dev-*"})
	require.NoError(t, err)
	good := issue(t, v, "good", map[string]interface{}{"role": "ops", "workspace": "prod"})
	other := issue(t, v, "other", map[string]interface{}{"role": "ops", "workspace": "dev-eu"})
	ver := startVerifier(t, v, v.Addr)

	var mu sync.Mutex
	var seen []http.Header
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		fmt.Fprintln(w, "hello from upstream")
	}))
	defer app.Close()

	dir := t.TempDir()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp", d), 0o777))
	}
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user root;" // workers must read this test's private temp dir
	}
	port := vaulttest.FreePort(t)
	conf := fmt.Sprintf(nginxConf, userLine, dir, strings.TrimPrefix(ver.URL, "http://"), strings.TrimPrefix(app.URL, "http://"), port)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644))
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Signal(syscall.SIGQUIT); _ = cmd.Wait() }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.True(t, waitFor(10*time.Second, func() bool {
		resp, err := http.Get(base + "/prod/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}), "nginx did not start")

	get := func(key string, extra map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+"/prod/items", nil)
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
	assert.Equal(t, http.StatusUnauthorized, get("vak_not_a_key", nil).StatusCode, "junk key")

	mu.Lock()
	seen = nil
	mu.Unlock()
	// A client trying to smuggle identity headers must not reach the upstream with them.
	resp = get(good, map[string]string{"X-Apikey-Id": "forged", "X-Apikey-Role": "admin"})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "good key")
	mu.Lock()
	require.Len(t, seen, 1)
	h := seen[0]
	mu.Unlock()
	assert.Len(t, h.Get("X-Apikey-Id"), 16)
	assert.NotEqual(t, "forged", h.Get("X-Apikey-Id"))
	assert.Equal(t, "ops", h.Get("X-Apikey-Role"))
	assert.Equal(t, "prod", h.Get("X-Apikey-Workspace"))

	assert.Equal(t, http.StatusForbidden, get(other, nil).StatusCode, "key of another workspace")

	_, err = v.Client.Logical().Delete("apikeys/keys/good")
	require.NoError(t, err)
	assert.True(t, waitFor(2*time.Second, func() bool { return get(good, nil).StatusCode == http.StatusUnauthorized }), "401 after revoke")
	fileLacks(t, filepath.Join(dir, "access.log"), []string{good[len(good)-49:], other[len(other)-49:]})
	fileLacks(t, ver.Log, []string{good[len(good)-49:]})
}
