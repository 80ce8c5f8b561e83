package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis: fields count from the last ")".
	st, err := parseStat("4242 (vault (x) y) S 17 4242 4242 0 -1 4194560 9 0 0 0 250 130 0 0 20 0 12 0 100 0 0")
	require.NoError(t, err)
	assert.Equal(t, procStat{pid: 4242, ppid: 17, cpu: 3800 * time.Millisecond}, st)

	for _, bad := range []string{"", "4242 vault S 17", "x (vault) S 17 1 1 0 -1 0 0 0 0 0 1 1", "4242 (vault) S 17 1 1"} {
		_, err := parseStat(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestVaultMeterCountsChildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	// This process has spent processor time; its own stat line parses.
	self := procCPU(os.Getpid())
	assert.Greater(t, self, time.Duration(0))
	st, err := parseStat(mustRead(t, "/proc/self/stat"))
	require.NoError(t, err)
	assert.Contains(t, childrenOf(st.ppid), os.Getpid(), "a process is among its parent's children")
	assert.GreaterOrEqual(t, vaultMeter{pid: st.ppid}.used(), self, "the parent's figure includes this child")
	assert.Equal(t, "", perRequest(0, 10))
	assert.Equal(t, "250 µs", perRequest(time.Second, 4000))
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(raw)
}
