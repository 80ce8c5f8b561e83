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
	require.Equal(t, 2, picks, "Start tried one port only")
	require.NotEqual(t, fmt.Sprintf("http://127.0.0.1:%d", takenPort), v.Addr)
	h, err := v.Client.Sys().Health()
	require.NoError(t, err)
	require.False(t, h.Sealed)
}
