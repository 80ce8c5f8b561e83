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
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

var (
	verifierOnce sync.Once
	verifierBin  string
	verifierErr  error
)

func buildVerifier(t *testing.T) string {
	t.Helper()
	verifierOnce.Do(func() {
		dir, err := os.MkdirTemp("", "apikeys-verifier-")
		if err != nil {
			verifierErr = err
			return
		}
		verifierBin = filepath.Join(dir, "apikeys-verifier")
		cmd := exec.Command("go", "build", "-o", verifierBin, "./cmd/apikeys-verifier")
		cmd.Dir = vaulttest.Root()
		if out, err := cmd.CombinedOutput(); err != nil {
			verifierErr = fmt.Errorf("build verifier: %v\n%s", err, out)
		}
	})
	require.NoError(t, verifierErr)
	return verifierBin
}

// verifierProc is a running apikeys-verifier.
type verifierProc struct {
	URL     string
	Log     string
	Audit   string
	cmd     *exec.Cmd
	done    chan struct{}
	logFile *os.File
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

func launchVerifier(t *testing.T, dir, addrs, tokenFile string, extra ...string) *verifierProc {
	t.Helper()
	port := vaulttest.FreePort(t)
	p := &verifierProc{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Log: filepath.Join(dir, "verifier.log"),
		Audit: filepath.Join(dir, "audit.log"), done: make(chan struct{})}
	args := append([]string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-vault-addr", addrs,
		"-vault-token-file", tokenFile, "-audit-log", p.Audit}, extra...)
	p.cmd = exec.Command(buildVerifier(t), args...)
	var err error
	p.logFile, err = os.Create(p.Log)
	require.NoError(t, err)
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	p.cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=")
	require.NoError(t, p.cmd.Start())
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ := os.ReadFile(p.Log)
	t.Fatalf("verifier did not become ready:\n%s", out)
	return nil
}

func (p *verifierProc) stop() {
	vaulttest.StopProcess(p.cmd, p.done)
	p.logFile.Close()
}

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
	sec, err := v.Client.Logical().Write("apikeys/keys/"+name, data)
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
