package vaulttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sweepBuilds removes the build directories of ended processes and keeps
// this process's, a live process's, and anything not named <name>-<pid>.
func TestSweepBuildsRemovesOnlyEndedProcesses(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	parent := t.TempDir()
	names := map[string]bool{ // name → kept
		fmt.Sprintf("apikeys-verifier-%d", ended.Process.Pid):        false,
		fmt.Sprintf("apikeys-verifier-%d", os.Getpid()):              true,
		fmt.Sprintf("vault-plugin-secrets-apikeys-%d", os.Getppid()): true,
		"apikeys-verifier-notapid":                                   true,
		"nodash":                                                     true,
	}
	for name := range names {
		require.NoError(t, os.Mkdir(filepath.Join(parent, name), 0o700))
	}
	sweepBuilds(parent)
	for name, kept := range names {
		_, err := os.Stat(filepath.Join(parent, name))
		assert.Equal(t, kept, err == nil, name)
	}
}
