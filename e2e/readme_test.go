package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// The README's addresses, which the test points at its own stack.
const (
	readmeVaultAddr    = "127.0.0.1:8200"
	readmeVerifierAddr = "127.0.0.1:8080"
)

// readmeShellBlocks returns the ```sh blocks of a Markdown document, in order.
// Other blocks (```go, plain ```) are prose examples and are not run.
func readmeShellBlocks(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var blocks []string
	var cur *strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(line) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "%s: a ```sh block is not closed", path)
	return blocks
}

// secretPattern finds keys and Vault service tokens in output, so a failure
// can show what happened without printing a secret.
var secretPattern = regexp.MustCompile(`vak_[0-9A-Za-z_]+|hv[sb]\.[0-9A-Za-z_-]+`)

// devStackPorts picks a Vault port whose cluster port (+1) is free too, and a
// verifier port, as scripts/dev-stack requires.
func devStackPorts(t *testing.T) (vaultPort, verifierPort, consolePort int) {
	t.Helper()
	for i := 0; i < 50; i++ {
		p := vaulttest.FreePort(t)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1)); err == nil {
			l.Close()
			vaultPort = p
			break
		}
	}
	require.NotZero(t, vaultPort, "no free pair of ports")
	taken := func(p int, others ...int) bool {
		return p == 0 || p == vaultPort || p == vaultPort+1 || slices.Contains(others, p)
	}
	for taken(verifierPort) {
		verifierPort = vaulttest.FreePort(t)
	}
	for taken(consolePort, verifierPort) {
		consolePort = vaulttest.FreePort(t)
	}
	return vaultPort, verifierPort, consolePort
}

// startDevStack runs scripts/dev-stack (what `make run` runs) on free ports
// with a private run directory, until the test ends.
func startDevStack(t *testing.T, vaultBin string) (vaultAddr, verifierAddr, banner string) {
	t.Helper()
	vaultPort, verifierPort, consolePort := devStackPorts(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "dev-stack.out")
	out, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command("bash", filepath.Join(vaulttest.Root(), "scripts", "dev-stack"))
	cmd.Dir = vaulttest.Root()
	cmd.Env = append(os.Environ(), "VAULT_BIN="+vaultBin, "RUN_DIR="+filepath.Join(dir, "run"),
		fmt.Sprintf("VAULT_PORT=%d", vaultPort), fmt.Sprintf("VERIFIER_PORT=%d", verifierPort),
		fmt.Sprintf("CONSOLE_PORT=%d", consolePort),
		"VAULT_ADDR=", "VAULT_TOKEN=")
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// SIGTERM lets dev-stack's trap stop Vault and the verifier it started.
	t.Cleanup(func() { vaulttest.StopProcess(cmd, done); out.Close() })

	ready := false
	deadline := time.Now().Add(5 * time.Minute) // it builds the plugin and the verifier first
	for !ready && time.Now().Before(deadline) {
		select {
		case <-done:
			deadline = time.Now()
		case <-time.After(200 * time.Millisecond):
		}
		raw, _ := os.ReadFile(logPath)
		ready = strings.Contains(string(raw), "Press Ctrl-C") // the end of its banner
	}
	if !ready {
		raw, _ := os.ReadFile(logPath)
		t.Fatalf("scripts/dev-stack did not come up:\n%s", secretPattern.ReplaceAllString(string(raw), "<redacted>"))
	}
	raw, err := os.ReadFile(logPath)
	require.NoError(t, err)
	return fmt.Sprintf("127.0.0.1:%d", vaultPort), fmt.Sprintf("127.0.0.1:%d", verifierPort), string(raw)
}

// bannerCommands are the copy-paste lines `make run` prints.
func bannerCommands(t *testing.T, banner string) string {
	t.Helper()
	_, rest, ok := strings.Cut(banner, "copy and paste:\n")
	require.True(t, ok, "make run printed no commands")
	cmds, _, ok := strings.Cut(rest, "Press Ctrl-C")
	require.True(t, ok)
	return cmds
}

// runTour runs script in one bash, failing at the first command that fails;
// the output, secrets redacted, is returned and shown on failure.
func runTour(t *testing.T, what, script string, env ...string) string {
	t.Helper()
	prelude := "set -euo pipefail\ntrap 'echo \"failed at: $BASH_COMMAND\" >&2' ERR\n"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", prelude+script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(append(os.Environ(), "HOME="+cmd.Dir, "VAULT_ADDR=", "VAULT_TOKEN="), env...)
	raw, err := cmd.CombinedOutput()
	output := secretPattern.ReplaceAllString(string(raw), "<redacted>")
	require.NoError(t, err, "%s failed:\n%s", what, output)
	return output
}

// TestIntegrationREADMETour runs every ```sh block of README.md in order, in one
// shell, against the stack `make run` starts, with the real vault CLI on PATH:
// the tour must run as printed. Only the two loopback addresses are changed.
func TestIntegrationREADMETour(t *testing.T) {
	vaultBin, err := vaulttest.FindVault()
	require.NoError(t, err)
	blocks := readmeShellBlocks(t, filepath.Join(vaulttest.Root(), "README.md"))
	require.NotEmpty(t, blocks, "README.md has no ```sh blocks")
	script := strings.Join(blocks, "\n")
	for _, addr := range []string{readmeVaultAddr, readmeVerifierAddr} {
		require.Contains(t, script, addr, "the tour no longer names %s", addr)
	}

	vaultAddr, verifierAddr, banner := startDevStack(t, vaultBin)

	// make run's own copy-paste lines first, as a user without vault on PATH
	// would paste them (they export PATH when vault is not there).
	demo := bannerCommands(t, banner)
	if _, err := exec.LookPath("vault"); err != nil {
		require.Contains(t, demo, "export PATH=", "make run must tell a user without vault how to reach it")
	}
	runTour(t, "make run's printed commands", demo)

	script = strings.NewReplacer(readmeVaultAddr, vaultAddr, readmeVerifierAddr, verifierAddr).Replace(script)
	// The CLI as the user has it: `vault` on PATH (the cached build is vault-<version>).
	binDir := t.TempDir()
	require.NoError(t, os.Symlink(vaultBin, filepath.Join(binDir, "vault")))
	output := runTour(t, fmt.Sprintf("the README tour (%d blocks)", len(blocks)), script,
		"PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))

	// The tour says what the verifier answers: hold it to that.
	assert.Contains(t, output, `"code":"VALID"`, "the tour's first verify answers VALID")
	assert.Contains(t, output, `"code":"REVOKED"`, "the tour's verify after revoke answers REVOKED")
}
