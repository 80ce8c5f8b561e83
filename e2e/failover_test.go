package e2e

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// TestFailoverKeepsEveryAcknowledgedWrite SIGKILLs the active node of a 3-node
// Raft cluster while issuances, revocations and verifications run, and checks
// that nothing acknowledged was lost and the verifier recovers.
func TestFailoverKeepsEveryAcknowledgedWrite(t *testing.T) {
	c := startCluster(t, 3)
	require.NoError(t, c.do(func(cl *api.Client) error {
		_, err := cl.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
		return err
	}))
	ver := startClusterVerifier(t, c, "-stale-if-error", "30s")

	var (
		mu        sync.Mutex
		created   = map[string]string{} // name -> key, create acknowledged
		revoked   = map[string]string{} // name -> key, delete acknowledged
		ambiguous = map[string]bool{}   // delete failed: it may or may not have happened
		attempted atomic.Int32
		failed    atomic.Int32
		verifies  atomic.Int32
	)
	issueOne := func(name string) {
		attempted.Add(1)
		var key string
		err := c.do(func(cl *api.Client) error {
			sec, err := cl.Logical().Write("apikeys/tenants/acme/keys/"+name, map[string]interface{}{"role": "r"})
			if err == nil {
				key = sec.Data["key"].(string)
			}
			return err
		})
		if err != nil {
			failed.Add(1)
			time.Sleep(50 * time.Millisecond) // no leader yet: don't spin
			return
		}
		mu.Lock()
		created[name] = key
		mu.Unlock()
	}
	for i := 0; i < 20; i++ {
		issueOne(fmt.Sprintf("pre-%02d", i))
	}
	// Issue, and revoke every third key issued.
	writers := vaulttest.StartLoad(3, func(w, i int) {
		name := fmt.Sprintf("w%d-%04d", w, i)
		issueOne(name)
		if i%3 != 2 {
			return
		}
		mu.Lock()
		key, ok := created[name]
		mu.Unlock()
		if !ok {
			return
		}
		err := c.do(func(cl *api.Client) error {
			_, err := cl.Logical().Delete("apikeys/tenants/acme/keys/" + name)
			return err
		})
		mu.Lock()
		if err == nil {
			revoked[name] = key
		} else {
			ambiguous[name] = true
		}
		delete(created, name)
		mu.Unlock()
	})
	// Verifications all along.
	readers := vaulttest.StartLoad(1, func(int, int) {
		mu.Lock()
		var key string
		for _, k := range created {
			key = k
			break
		}
		mu.Unlock()
		if key != "" {
			ver.verify(t, map[string]interface{}{"key": key})
			verifies.Add(1)
		}
		time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
	})

	time.Sleep(3 * time.Second)
	active := c.activeNode(t)
	t.Logf("killing active node %d", active)
	c.script(t, "kill-node", fmt.Sprint(active))
	killed := time.Now()
	// The verifier answers again (a fresh, never-cached key needs Vault) within 10 s.
	fresh := ""
	var vaultBack time.Duration
	answered := waitFor(30*time.Second, func() bool {
		if fresh == "" {
			_ = c.do(func(cl *api.Client) error {
				sec, err := cl.Logical().Write("apikeys/tenants/acme/keys/after-failover", map[string]interface{}{"role": "r"})
				if err == nil {
					fresh = sec.Data["key"].(string)
					vaultBack = time.Since(killed)
				}
				return err
			})
			if fresh == "" {
				return false
			}
		}
		return ver.code(t, fresh) == "VALID"
	})
	recovery := time.Since(killed)
	require.True(t, answered, "no answer after failover")
	t.Logf("after the kill: Vault took a write again after %s; the verifier answered a never-cached key after %s", vaultBack, recovery)
	assert.Less(t, recovery, 10*time.Second)
	time.Sleep(2 * time.Second)
	writers.Stop()
	readers.Stop()
	newActive := c.activeNode(t)
	assert.NotEqual(t, active, newActive)

	mu.Lock()
	defer mu.Unlock()
	lostCreates, lostRevokes := 0, 0
	for name, key := range created {
		if code := ver.code(t, key); code != "VALID" {
			lostCreates++
			t.Errorf("acknowledged key %s answers %s", name, code)
		}
	}
	for name, key := range revoked {
		if code := ver.code(t, key); code != "REVOKED" {
			lostRevokes++
			t.Errorf("acknowledged revocation of %s answers %s", name, code)
		}
	}
	t.Logf("failover: %d creates attempted, %d failed during the election, %d acknowledged keys VALID, %d acknowledged revocations REVOKED, %d revocations with an unknown outcome (not counted), %d verifications; lost: %d creates, %d revocations",
		attempted.Load(), failed.Load(), len(created)-lostCreates, len(revoked)-lostRevokes, len(ambiguous), verifies.Load(), lostCreates, lostRevokes)
	assert.Positive(t, len(revoked))

	// The feed still evicts on the new active node: revoke a cached key.
	var victim string
	for name, key := range created {
		victim = name
		require.Equal(t, "VALID", ver.code(t, key))
		require.NoError(t, c.do(func(cl *api.Client) error {
			_, err := cl.Logical().Delete("apikeys/tenants/acme/keys/" + name)
			return err
		}))
		start := time.Now()
		assert.True(t, waitFor(2*time.Second, func() bool { return ver.code(t, key) == "REVOKED" }))
		t.Logf("revocation on the new active node seen in %s", time.Since(start))
		break
	}
	require.NotEmpty(t, victim)
	// Periodic work (tidy) runs on the new active node.
	require.NoError(t, c.do(func(cl *api.Client) error { _, err := cl.Logical().Write("apikeys/tidy", nil); return err }))
}

// TestRestartKeepsKeysAndFeed restarts a persistent single-node Vault (crash:
// SIGKILL): keys, revocations and the feed position survive, and a verifier
// that kept running follows on from its cursor.
func TestRestartKeepsKeysAndFeed(t *testing.T) {
	c := startCluster(t, 1)
	cl := c.clients[0]
	_, err := cl.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
	require.NoError(t, err)
	keys := map[string]string{}
	for i := 0; i < 10; i++ {
		sec, err := cl.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/k%d", i), map[string]interface{}{"role": "r"})
		require.NoError(t, err)
		keys[fmt.Sprintf("k%d", i)] = sec.Data["key"].(string)
	}
	_, err = cl.Logical().Delete("apikeys/tenants/acme/keys/k0")
	require.NoError(t, err)
	ver := startClusterVerifier(t, c, "-stale-if-error", "60s")
	require.Equal(t, "VALID", ver.code(t, keys["k1"]))
	before, err := cl.Logical().Read("apikeys/changes")
	require.NoError(t, err)
	head := before.Data["head"]

	c.script(t, "kill-node", "1")
	c.script(t, "start-node", "1")

	after, err := cl.Logical().Read("apikeys/changes")
	require.NoError(t, err)
	assert.Equal(t, head, after.Data["head"], "the feed position survives the restart")
	assert.Len(t, after.Data["changes"], 12, "the role's creation, ten keys, one revocation")
	list, err := cl.Logical().List("apikeys/tenants/acme/keys")
	require.NoError(t, err)
	assert.Len(t, list.Data["keys"], 9)
	assert.Equal(t, "REVOKED", ver.code(t, keys["k0"]))
	for name, key := range keys {
		if name != "k0" {
			assert.Equal(t, "VALID", ver.code(t, key), name)
		}
	}
	// New mutations continue the sequence, and the verifier follows them.
	_, err = cl.Logical().Delete("apikeys/tenants/acme/keys/k1")
	require.NoError(t, err)
	assert.True(t, waitFor(5*time.Second, func() bool { return ver.code(t, keys["k1"]) == "REVOKED" }))
	next, err := cl.Logical().Read("apikeys/changes")
	require.NoError(t, err)
	assert.Len(t, next.Data["changes"], 13)
}

// TestStepDownWithRequestsInFlight: `vault operator step-down` completes within
// 5 s while issuances, rotations and the verifier's feed polls are in flight,
// and nothing stops working afterwards.
func TestStepDownWithRequestsInFlight(t *testing.T) {
	c := startCluster(t, 3)
	require.NoError(t, c.do(func(cl *api.Client) error {
		_, err := cl.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
		return err
	}))
	ver := startClusterVerifier(t, c)
	var key string
	require.NoError(t, c.do(func(cl *api.Client) error {
		sec, err := cl.Logical().Write("apikeys/tenants/acme/keys/rotating", map[string]interface{}{"role": "r"})
		if err == nil {
			key = sec.Data["key"].(string)
		}
		return err
	}))
	require.Equal(t, "VALID", ver.code(t, key))
	var ops atomic.Int32
	count := func(err error) {
		if err == nil {
			ops.Add(1)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	issuers := vaulttest.StartLoad(1, func(_, i int) {
		count(c.do(func(cl *api.Client) error {
			_, err := cl.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/sd-%05d", i), map[string]interface{}{"role": "r"})
			return err
		}))
	})
	rotators := vaulttest.StartLoad(1, func(int, int) {
		count(c.do(func(cl *api.Client) error {
			_, err := cl.Logical().Write("apikeys/tenants/acme/keys/rotating/rotate", map[string]interface{}{"grace": "0"})
			return err
		}))
	})
	time.Sleep(1500 * time.Millisecond)
	active := c.activeNode(t)
	start := time.Now()
	err := c.clients[active-1].Sys().StepDown()
	require.NoError(t, err)
	// The call returns at once; the step-down is done when the node stops being active.
	stepped := waitFor(10*time.Second, func() bool {
		l, err := c.clients[active-1].Sys().Leader()
		return err == nil && !l.IsSelf
	})
	took := time.Since(start)
	time.Sleep(time.Second)
	issuers.Stop()
	rotators.Stop()
	require.True(t, stepped, "the active node never stepped down")
	t.Logf("step-down completed in %s with %d issuances/rotations completed around it", took, ops.Load())
	assert.Less(t, took, 5*time.Second)
	require.True(t, waitFor(10*time.Second, func() bool {
		return c.do(func(cl *api.Client) error {
			_, err := cl.Logical().Write("apikeys/tenants/acme/keys/after-stepdown", map[string]interface{}{"role": "r"})
			return err
		}) == nil
	}), "a new active node takes writes")
	assert.NotEqual(t, active, c.activeNode(t))
}
