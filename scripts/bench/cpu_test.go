package main

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a parenthesis: fields count from the last ")".
	st, err := parseStat("4242 (vault (x) y) S 17 4242 4242 0 -1 4194560 9 0 0 0 250 130 40 2 20 0 12 0 100 0 0")
	require.NoError(t, err)
	assert.Equal(t, procStat{pid: 4242, ppid: 17, cpu: 3800 * time.Millisecond, reaped: 420 * time.Millisecond}, st)

	for _, bad := range []string{
		"", "4242 vault S 17",
		"x (vault) S 17 1 1 0 -1 0 0 0 0 0 1 1 0 0",
		"4242 (vault) S 17 1 1",
		"4242 (vault) S 17 1 1 0 -1 0 0 0 0 0 1 1 0", // no cstime
		"4242 (vault) S 17 1 1 0 -1 0 0 0 0 0 1 x 0 0",
	} {
		_, err := parseStat(bad)
		assert.Error(t, err, "%q", bad)
	}
}

// burnEnv makes the test binary, started as a child, spin until killed.
const burnEnv = "BENCH_CPU_TEST_BURN"

func TestMain(m *testing.M) {
	if os.Getenv(burnEnv) != "" {
		var sink uint64
		for i := uint64(0); ; i++ {
			sink += i * i
		}
	}
	os.Exit(m.Run())
}

// The meter counts its process's children: a child that has spent a
// quarter of a second is in the total, which this process's own reads
// microseconds apart cannot make up.
func TestVaultMeterCountsChildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), burnEnv+"=1")
	require.NoError(t, child.Start())
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })

	for end := time.Now().Add(20 * time.Second); procCPU(child.Process.Pid) < 250*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		require.True(t, time.Now().Before(end), "the child spent no processor time")
	}
	self := procCPU(os.Getpid())
	burnt := procCPU(child.Process.Pid)
	total := vaultMeter{pid: os.Getpid()}.used()
	assert.Contains(t, childrenOf(os.Getpid()), child.Process.Pid)
	assert.GreaterOrEqual(t, total, self+burnt, "the total holds this process and its child")

	// Once the child is reaped its time moves to this process's reaped time:
	// the total does not drop.
	require.NoError(t, child.Process.Kill())
	_ = child.Wait()
	assert.GreaterOrEqual(t, vaultMeter{pid: os.Getpid()}.used(), total)
	assert.NotContains(t, childrenOf(os.Getpid()), child.Process.Pid)

	assert.Equal(t, "", perRequest(0, 10))
	assert.Equal(t, "250 µs", perRequest(time.Second, 4000))
}

func TestPerRequestCount(t *testing.T) {
	assert.Equal(t, "3.50", perRequestCount(350, 100))
	assert.Equal(t, "", perRequestCount(-1, 100), "not measured")
	assert.Equal(t, "", perRequestCount(10, 0), "no requests")
}
