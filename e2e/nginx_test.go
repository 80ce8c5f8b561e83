package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// nginxMain is the main context around the shipped http-level include: what
// Debian's /etc/nginx/nginx.conf provides, with this test's private paths.
const nginxMain = `%s
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
  include %[2]s/apikeys.conf;
}
`

// TestNginxAuthRequest runs Debian's nginx from the shipped
// deploy/nginx/apikeys.conf (addresses changed only) in front of a real
// verifier and Vault.
func TestNginxAuthRequest(t *testing.T) {
	bin := proxyBin(t, "nginx", "NGINX_BIN", "/usr/sbin/nginx", "nginx:nginx-light")
	s := startForwardAuthStack(t)
	dir := t.TempDir()
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "tmp", d), 0o777))
	}
	userLine := ""
	if os.Geteuid() == 0 {
		userLine = "user root;" // workers must read this test's private temp dir
	}
	port := vaulttest.FreePort(t)
	conf := s.template(t, filepath.Join(vaulttest.Root(), "deploy", "nginx", "apikeys.conf"),
		"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "apikeys.conf"), []byte(conf), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(fmt.Sprintf(nginxMain, userLine, dir)), 0o644))
	startProxy(t, exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf")),
		filepath.Join(dir, "nginx.out"), fmt.Sprintf("http://127.0.0.1:%d", port))

	s.check(t, fmt.Sprintf("http://127.0.0.1:%d", port))
	fileLacks(t, filepath.Join(dir, "access.log"), []string{s.good[len(s.good)-49:], s.otherWS[len(s.otherWS)-49:]})
}
