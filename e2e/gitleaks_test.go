package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/token"
)

// gitleaksVersion is the gitleaks the secret-scanning test installs from the
// Go module proxy (cached in .cache/gitleaks/, git-ignored).
const gitleaksVersion = "v8.30.1"

// gitleaksRule is the rule id in deploy/gitleaks/apikeys.toml.
const gitleaksRule = "vault-apikeys-key"

// gitleaksBin installs gitleaks once into .cache/gitleaks/<version>/.
func gitleaksBin(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(vaulttest.Root(), ".cache", "gitleaks", gitleaksVersion)
	bin := filepath.Join(dir, "gitleaks")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("installing gitleaks %s from the Go module proxy into %s (a few minutes, once)", gitleaksVersion, dir)
	cmd := exec.Command("go", "install", "github.com/zricethezav/gitleaks/v8@"+gitleaksVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=")
	cmd.Dir = os.TempDir() // outside our module: go install pkg@version ignores go.mod anyway
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go install gitleaks: %s", out)
	return bin
}

// gitleaksFinding is the part of gitleaks' JSON report the test reads.
type gitleaksFinding struct {
	RuleID    string
	File      string
	StartLine int
	Secret    string
}

// runGitleaks scans path (from the repository root, so .gitleaks.toml's
// relative extend path resolves) and returns the findings of our rule.
func runGitleaks(t *testing.T, path string, args ...string) []gitleaksFinding {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	argv := append([]string{"dir", "--no-banner", "--exit-code", "0", "--enable-rule", gitleaksRule,
		"--report-format", "json", "--report-path", report}, args...)
	cmd := exec.Command(gitleaksBin(t), append(argv, path)...)
	cmd.Dir = vaulttest.Root()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "gitleaks: %s", out)
	raw, err := os.ReadFile(report)
	require.NoError(t, err)
	var findings []gitleaksFinding
	require.NoError(t, json.Unmarshal(raw, &findings))
	var ours []gitleaksFinding
	for _, f := range findings {
		if f.RuleID == gitleaksRule {
			ours = append(ours, f)
		}
	}
	return ours
}

// TestGitleaksFindsIssuedKeys: the shipped rule finds every key where people
// leak them (env files, JSON, shell history, a URL), and nothing that is not one.
func TestGitleaksFindsIssuedKeys(t *testing.T) {
	dir := t.TempDir()
	var keys []string
	for i := 0; i < 12; i++ {
		tok, err := token.Generate(token.DefaultPrefix)
		require.NoError(t, err)
		keys = append(keys, tok.String())
	}
	files := map[string]string{
		"app.env":      "API_KEY=" + keys[0] + "\nOTHER=" + keys[1] + "\n",
		"config.json":  fmt.Sprintf(`{"apikey":%q,"keys":[%q,%q]}`, keys[2], keys[3], keys[4]) + "\n",
		"history.sh":   "curl -H 'Authorization: Bearer " + keys[5] + "' https://api.example.com/\nexport K=\"" + keys[6] + "\"\n",
		"notes.md":     "the key `" + keys[7] + "` was pasted here; and " + keys[8] + ".\n",
		"url.txt":      "https://api.example.com/v1?api_key=" + keys[9] + "&x=1\n",
		"main.go":      "package main\n\nconst k = \"" + keys[10] + "\"\nvar m = map[string]string{\"key\": \"" + keys[11] + "\"}\n",
		"near-miss.md": "not keys: x" + keys[0] + " " + keys[1][:len(keys[1])-1] + " " + keys[2] + "Z " + strings.Replace(keys[3], "_", "-", 1) + "\n",
	}
	for name, body := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}

	findings := runGitleaks(t, dir, "--config", filepath.Join(vaulttest.Root(), "deploy", "gitleaks", "apikeys.toml"))
	found := map[string]int{}
	for _, f := range findings {
		assert.NotEqual(t, "near-miss.md", filepath.Base(f.File), "a near miss matched on line %d", f.StartLine)
		found[f.Secret]++
	}
	for i, k := range keys {
		// Never print a key: name it by its index.
		assert.Equal(t, 1, found[k], "key #%d found %d times", i, found[k])
		tok, err := token.Parse(k)
		require.NoError(t, err, "key #%d", i)
		assert.Equal(t, k, tok.String(), "a finding is confirmed offline by its checksum")
	}
	assert.Len(t, findings, len(keys))
}

// TestGitleaksRepositoryClean: our rule (through the repository's
// .gitleaks.toml) reports nothing in this repository's own files.
func TestGitleaksRepositoryClean(t *testing.T) {
	findings := runGitleaks(t, ".")
	for _, f := range findings {
		t.Errorf("gitleaks %s: %s:%d", f.RuleID, f.File, f.StartLine)
	}
}
