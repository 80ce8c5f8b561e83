package vaulttest

import (
	"fmt"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// A free port can be taken by another process between FreePort closing it and
// Vault binding it (test packages run in parallel): Start must then try
// another port, not fail the test.
func TestStartRetriesATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port
	picks := 0
	pickPort = func(t T) int {
		picks++
		if picks == 1 {
			return takenPort
		}
		return FreePort(t)
	}
	t.Cleanup(func() { pickPort = FreePort })

	v := Start(t, WithoutEngine())
	// At least the taken port and one more: the next pick can be taken too
	// (another package's server), and Start tries again then as well.
	require.GreaterOrEqual(t, picks, 2, "Start tried one port only")
	require.NotEqual(t, fmt.Sprintf("http://127.0.0.1:%d", takenPort), v.Addr)
	h, err := v.Client.Sys().Health()
	require.NoError(t, err)
	require.False(t, h.Sealed)
}

// WithRaft's server keeps its data in a one-node Raft cluster on disk, and
// the plugin works on it.
func TestStartWithRaft(t *testing.T) {
	v := Start(t, WithRaft(""))
	sec, err := v.Client.Logical().Read("sys/storage/raft/configuration")
	require.NoError(t, err)
	servers := sec.Data["config"].(map[string]interface{})["servers"].([]interface{})
	require.Len(t, servers, 1)
	require.Equal(t, true, servers[0].(map[string]interface{})["leader"])
	_, err = v.Client.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
	require.NoError(t, err)
	sec, err = v.Client.Logical().Write("apikeys/tenants/acme/keys/k", map[string]interface{}{"role": "r"})
	require.NoError(t, err)
	require.NotEmpty(t, sec.Data["key"])
}
