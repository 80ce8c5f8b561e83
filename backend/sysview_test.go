package backend

import (
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"
)

// countingView counts how often the backend asks Vault for the replication
// state: for an external plugin each ask is a round trip through Vault.
type countingView struct {
	logical.SystemView
	asks  atomic.Int64
	state atomic.Uint32
}

func (v *countingView) ReplicationState() consts.ReplicationState {
	v.asks.Add(1)
	return consts.ReplicationState(v.state.Load())
}

func TestRequestsShareOneReplicationStateAnswer(t *testing.T) {
	view := &countingView{SystemView: logical.TestSystemView()}
	e := newTestEnvWith(t, func(c *logical.BackendConfig) { c.System = view })
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	for i := range 20 {
		e.issue("k"+string(rune('a'+i)), nil)
		e.mustOK(logical.ReadOperation, "config", nil)
	}
	// 42 routed requests; the framework asks before each one it routes.
	require.LessOrEqual(t, view.asks.Load(), int64(2), "every request asked Vault for the replication state")
}

func TestReplicationStateIsAskedAgainAfterItsTTL(t *testing.T) {
	view := &countingView{SystemView: logical.TestSystemView()}
	rv := newReplicationView(view).(*replicationView)
	require.Equal(t, consts.ReplicationUnknown, rv.ReplicationState())
	view.state.Store(uint32(consts.ReplicationPerformanceStandby))
	require.Equal(t, consts.ReplicationUnknown, rv.ReplicationState(), "within the TTL the answer is reused")
	require.Equal(t, int64(1), view.asks.Load())

	// Age the answer past the TTL: the next ask reaches Vault and sees the change.
	old := *rv.last.Load()
	old.at = old.at.Add(-replicationStateTTL)
	rv.last.Store(&old)
	require.True(t, rv.ReplicationState().HasState(consts.ReplicationPerformanceStandby))
	require.Equal(t, int64(2), view.asks.Load())
}
