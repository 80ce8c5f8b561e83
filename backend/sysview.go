package backend

import (
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// replicationStateTTL is how long an answer of Vault's replication state is
// reused.
const replicationStateTTL = time.Second

// replicationView is the SystemView the backend runs with. framework.Backend
// asks for the replication state before every request it routes (to honour
// the ForwardPerformance* properties, which no path of this plugin sets), and
// for an external plugin each ask is a gRPC round trip through Vault: one in
// every nine of a key create's. A node's replication state only changes when
// Vault sets its mounts up again, which builds a new backend, so the answer is
// asked at most once per replicationStateTTL. Everything else passes through.
type replicationView struct {
	logical.SystemView
	last atomic.Pointer[replicationAnswer]
}

type replicationAnswer struct {
	state consts.ReplicationState
	at    time.Time
}

func newReplicationView(sys logical.SystemView) logical.SystemView {
	if sys == nil {
		return nil
	}
	return &replicationView{SystemView: sys}
}

func (v *replicationView) ReplicationState() consts.ReplicationState {
	now := time.Now()
	if a := v.last.Load(); a != nil && now.Sub(a.at) < replicationStateTTL {
		return a.state
	}
	state := v.SystemView.ReplicationState()
	v.last.Store(&replicationAnswer{state: state, at: now})
	return state
}
