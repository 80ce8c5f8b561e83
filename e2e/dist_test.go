package e2e

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// TestDistLinuxAmd64 runs scripts/dist (what `make dist` runs) for one
// platform: static, version-stamped binaries, SHA256SUMS that match them, and
// a register line carrying the plugin's checksum. The other platforms are the
// same build with another GOOS/GOARCH.
func TestDistLinuxAmd64(t *testing.T) {
	out := t.TempDir()
	const version = "v9.8.7-disttest"
	cmd := exec.Command("bash", filepath.Join(vaulttest.Root(), "scripts", "dist"), "linux/amd64")
	cmd.Dir = vaulttest.Root()
	cmd.Env = append(os.Environ(), "DIST_DIR="+out, "VERSION="+version)
	raw, err := cmd.CombinedOutput()
	require.NoError(t, err, "scripts/dist: %s", raw)

	sums, err := os.ReadFile(filepath.Join(out, "SHA256SUMS"))
	require.NoError(t, err)
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(line)
		require.Len(t, f, 2, "SHA256SUMS line %q", line)
		listed[f[1]] = f[0]
	}
	names := []string{"vault-plugin-secrets-apikeys", "apikeys-verifier"}
	if _, err := os.Stat(filepath.Join(vaulttest.Root(), "cmd", "apikeys-console")); err == nil {
		names = append(names, "apikeys-console")
	}
	assert.Len(t, listed, len(names))
	for _, name := range names {
		rel := "linux_amd64/" + name
		bin, err := os.ReadFile(filepath.Join(out, rel))
		require.NoError(t, err)
		sum := sha256.Sum256(bin)
		assert.Equal(t, hex.EncodeToString(sum[:]), listed[rel], "%s in SHA256SUMS", rel)

		// Static: no ELF interpreter, so it runs on any Linux (CGO off).
		f, err := elf.Open(filepath.Join(out, rel))
		require.NoError(t, err)
		for _, p := range f.Progs {
			assert.NotEqual(t, elf.PT_INTERP, p.Type, "%s is dynamically linked", rel)
		}
		f.Close()
	}
	plugin := listed["linux_amd64/vault-plugin-secrets-apikeys"]
	assert.Contains(t, string(raw), "vault plugin register -sha256="+plugin+" -version="+version+
		" -command=vault-plugin-secrets-apikeys secret vault-plugin-secrets-apikeys")

	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		got, err := exec.Command(filepath.Join(out, "linux_amd64", "vault-plugin-secrets-apikeys"), "-version").Output()
		require.NoError(t, err)
		assert.Contains(t, string(got), version, "the plugin reports the stamped version")
	}
}
