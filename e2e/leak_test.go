package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/token"
)

// TestSecretLeakScan runs the whole lifecycle with a file audit device and debug
// logging everywhere, then searches every log, audit line, raw storage entry
// and the metrics page for each issued key and secret: zero hits.
func TestSecretLeakScan(t *testing.T) {
	v := vaulttest.Start(t, vaulttest.WithServerArgs("-log-level=debug"))
	auditPath := filepath.Join(v.Dir, "vault-audit.log")
	require.NoError(t, v.Client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": auditPath}}))
	ver := startVerifier(t, v, v.Addr, "-log-level", "debug", "-usage-flush", "1s")

	var secrets []string
	keep := func(key string) string {
		tok, err := token.Parse(key)
		require.NoError(t, err)
		secrets = append(secrets, key, tok.Secret, tok.Secret[:20])
		return key
	}
	w := func(path string, data map[string]interface{}) *api.Secret {
		sec, err := v.Client.Logical().Write(path, data)
		require.NoError(t, err, path)
		return sec
	}
	w("apikeys/roles/ops", map[string]interface{}{"permissions": "clusters:read,clusters:write", "allowed_workspaces": "prod,dev-*", "allowed_cidrs": "127.0.0.0/8"})
	a := keep(issue(t, v, "a", map[string]interface{}{"role": "ops", "workspace": "prod", "metadata": map[string]interface{}{"team": "x"}}))
	b := keep(issue(t, v, "b", map[string]interface{}{"role": "ops", "workspace": "dev-eu", "ttl": "1h"}))
	c := keep(issue(t, v, "c", map[string]interface{}{"role": "ops"}))

	for _, body := range []map[string]interface{}{
		{"key": a}, {"key": a, "workspace": "prod", "permissions": []string{"clusters:read"}},
		{"key": b, "workspace": "prod"}, {"key": a, "permissions": []string{"clusters:delete"}},
		{"key": a, "client_ip": "192.0.2.1"}, {"key": a[:len(a)-1] + "x"}, {"key": c},
	} {
		ver.verify(t, body)
	}
	req, _ := http.NewRequest(http.MethodGet, ver.URL+"/v1/auth", nil)
	req.Header.Set("Authorization", "Bearer "+a)
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	req.Header.Set("X-API-Key", b)
	req.Header.Del("Authorization")
	resp, err = httpClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()

	rotated := keep(w("apikeys/tenants/acme/keys/a/rotate", map[string]interface{}{"grace": "1h"}).Data["key"].(string))
	ver.verify(t, map[string]interface{}{"key": rotated})
	w("apikeys/tenants/acme/keys/b/disable", nil)
	ver.verify(t, map[string]interface{}{"key": b})
	_, err = v.Client.Logical().JSONMergePatch(t.Context(), "apikeys/tenants/acme/keys/c", map[string]interface{}{"description": "patched"})
	require.NoError(t, err)
	w("apikeys/revoke", map[string]interface{}{"key": c})
	ver.verify(t, map[string]interface{}{"key": c})
	w("transit/keys/apikeys/rotate", nil)
	w("apikeys/rewrap", nil)
	w("apikeys/tidy", nil)
	_, err = v.Client.Logical().Delete("apikeys/tenants/acme/keys/a")
	require.NoError(t, err)
	ver.verify(t, map[string]interface{}{"key": a})
	time.Sleep(1500 * time.Millisecond) // let a usage flush happen

	metrics := fetch(t, ver.URL+"/metrics")
	require.Contains(t, metrics, "# TYPE")
	sources := map[string]string{
		"vault server log (plugin included)": v.Log(),
		"vault audit log":                    readFile(t, auditPath),
		"verifier log":                       readFile(t, ver.Log),
		"verifier audit lines":               readFile(t, ver.Audit),
		"raw storage (sys/raw)":              v.RawStorage(t),
		"verifier metrics":                   metrics,
	}
	require.NotEmpty(t, sources["verifier audit lines"])
	require.Contains(t, sources["raw storage (sys/raw)"], "key/")
	require.Contains(t, sources["vault audit log"], "apikeys/tenants/acme/keys/a")
	hits := 0
	for where, text := range sources {
		for i, s := range secrets {
			if strings.Contains(text, s) {
				hits++
				t.Errorf("secret #%d found in %s", i, where)
			}
		}
	}
	t.Logf("scanned %d sources (%d bytes) for %d secrets: %d hits", len(sources), totalLen(sources), len(secrets), hits)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(raw)
}

func fetch(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = io.Copy(&b, resp.Body)
	return b.String()
}

func totalLen(m map[string]string) int {
	n := 0
	for _, s := range m {
		n += len(s)
	}
	return n
}
