package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// verifierProc is a running apikeys-verifier (vaulttest.StartVerifier).
type verifierProc struct {
	*vaulttest.Verifier
	cmd *exec.Cmd
}

// startVerifier runs the verifier against addrs with a token limited to
// policies/verifier.hcl (never root), plus extra flags.
func startVerifier(t *testing.T, v *vaulttest.Vault, addrs string, extra ...string) *verifierProc {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(v.TokenFromFile(t, "policies/verifier.hcl")), 0o600))
	return launchVerifier(t, dir, addrs, tokenFile, extra...)
}

// launchVerifier runs the verifier with its logs in dir and the token in
// tokenFile.
func launchVerifier(t *testing.T, dir, addrs, tokenFile string, extra ...string) *verifierProc {
	t.Helper()
	v := vaulttest.StartVerifier(t, dir, addrs, tokenFile, extra...)
	return &verifierProc{Verifier: v, cmd: v.Cmd}
}

func (p *verifierProc) stop() { p.Stop() }

// verdict is the part of a /v1/verify answer the tests read.
type verdict struct {
	Status int
	Valid  bool   `json:"valid"`
	Code   string `json:"code"`
	KeyID  string `json:"key_id"`
}

var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func (p *verifierProc) verify(t *testing.T, body map[string]interface{}) verdict {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := httpClient.Post(p.URL+"/v1/verify", "application/json", bytes.NewReader(raw))
	require.NoError(t, err)
	defer resp.Body.Close()
	var v verdict
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	}
	v.Status = resp.StatusCode
	return v
}

func (p *verifierProc) code(t *testing.T, key string) string {
	t.Helper()
	v := p.verify(t, map[string]interface{}{"key": key})
	if v.Status != http.StatusOK {
		return fmt.Sprintf("HTTP %d", v.Status)
	}
	return v.Code
}

// issue creates a key as root and returns it.
func issue(t *testing.T, v *vaulttest.Vault, name string, data map[string]interface{}) string {
	t.Helper()
	sec, err := v.Client.Logical().Write("apikeys/tenants/acme/keys/"+name, data)
	require.NoError(t, err)
	return sec.Data["key"].(string)
}

// waitFor polls cond every 10 ms until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// fileLacks fails the test if any secret appears in the file (the secret itself
// is never printed).
func fileLacks(t *testing.T, path string, secrets []string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for i, s := range secrets {
		if strings.Contains(string(raw), s) {
			t.Errorf("%s contains secret #%d", filepath.Base(path), i)
		}
	}
}
