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

// TestCaddyForwardAuth runs Debian's caddy from the shipped
// deploy/caddy/Caddyfile (addresses changed only) in front of a real verifier
// and Vault.
func TestCaddyForwardAuth(t *testing.T) {
	bin := proxyBin(t, "caddy", "CADDY_BIN", "/usr/bin/caddy", "caddy:caddy")
	s := startForwardAuthStack(t)
	dir := t.TempDir()
	port, admin := vaulttest.FreePort(t), vaulttest.FreePort(t)
	conf := s.template(t, filepath.Join(vaulttest.Root(), "deploy", "caddy", "Caddyfile"),
		"admin localhost:2019", fmt.Sprintf("admin 127.0.0.1:%d", admin),
		"\n:80 {", fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\tbind 127.0.0.1", port))
	file := filepath.Join(dir, "Caddyfile")
	require.NoError(t, os.WriteFile(file, []byte(conf), 0o644))
	cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	// Caddy keeps state under $HOME and the XDG directories: keep them private.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	startProxy(t, cmd, filepath.Join(dir, "caddy.out"), base)

	s.check(t, base)
}
