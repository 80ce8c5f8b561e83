package e2e

import (
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// TestStaleIfErrorThenFailClosed freezes Vault (SIGSTOP): the verifier serves
// cached verdicts for stale-if-error, then answers 503 to everything, and
// recovers by itself once Vault answers again.
func TestStaleIfErrorThenFailClosed(t *testing.T) {
	v := vaulttest.Start(t)
	_, err := v.Client.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
	require.NoError(t, err)
	hot := issue(t, v, "hot", map[string]interface{}{"role": "r"})
	unseen := issue(t, v, "unseen", map[string]interface{}{"role": "r"})
	ver := startVerifier(t, v, v.Addr, "-stale-if-error", "3s", "-feed-wait", "1s", "-vault-timeout", "1s")
	if c := ver.code(t, hot); c != "VALID" {
		log, _ := os.ReadFile(ver.Log)
		t.Fatalf("first verify: %s\n%s", c, log)
	}

	require.NoError(t, v.Signal(syscall.SIGSTOP))
	frozen := time.Now()
	resumed := false
	defer func() {
		if !resumed {
			_ = v.Signal(syscall.SIGCONT)
		}
	}()
	assert.Equal(t, "VALID", ver.code(t, hot), "cached verdicts are served inside the stale window")
	var failClosedAfter time.Duration
	require.True(t, waitFor(10*time.Second, func() bool {
		if ver.code(t, hot) == "HTTP 503" {
			failClosedAfter = time.Since(frozen)
			return true
		}
		return false
	}), "the verifier must fail closed once stale-if-error has passed")
	t.Logf("fail-closed %s after Vault froze (stale-if-error 3s, feed wait 1s, vault timeout 1s)", failClosedAfter)
	assert.GreaterOrEqual(t, failClosedAfter, 2*time.Second, "not before the stale window")
	assert.Equal(t, "HTTP 503", ver.code(t, unseen), "an undecidable key is 503, never a guess")
	resp, err := http.Get(ver.URL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	require.NoError(t, v.Signal(syscall.SIGCONT))
	resumed = true
	back := time.Now()
	require.True(t, waitFor(5*time.Second, func() bool { return ver.code(t, hot) == "VALID" }), "recovers within 5 s without a restart")
	t.Logf("answering again %s after Vault resumed", time.Since(back))
	assert.Equal(t, "VALID", ver.code(t, unseen))
}

// TestSealWithVerifierFollowing: seal completes within 5 s while issuances and
// the verifier's feed polls are in flight; the verifier then goes stale → 503;
// after unseal it answers again within 5 s.
func TestSealWithVerifierFollowing(t *testing.T) {
	v := vaulttest.Start(t)
	_, err := v.Client.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
	require.NoError(t, err)
	key := issue(t, v, "k", map[string]interface{}{"role": "r"})
	ver := startVerifier(t, v, v.Addr, "-stale-if-error", "3s")
	require.Equal(t, "VALID", ver.code(t, key))

	var issued atomic.Int32
	load := vaulttest.StartLoad(3, func(w, i int) {
		if _, err := v.Client.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/load-%d-%d", w, i), map[string]interface{}{"role": "r"}); err == nil {
			issued.Add(1)
		}
	})
	time.Sleep(time.Second)
	start := time.Now()
	out, err := v.CLI(t, "operator", "seal")
	took := time.Since(start)
	load.Stop()
	require.NoError(t, err, out)
	t.Logf("seal took %s (%d issuances ran alongside)", took, issued.Load())
	assert.Less(t, took, 5*time.Second)

	require.True(t, waitFor(10*time.Second, func() bool { return ver.code(t, key) == "HTTP 503" }), "fail closed after the stale window")
	out, err = v.CLI(t, "operator", "unseal", v.UnsealKey(t))
	require.NoError(t, err, out)
	unsealed := time.Now()
	require.True(t, waitFor(5*time.Second, func() bool { return ver.code(t, key) == "VALID" }), "answers again within 5 s of unseal")
	t.Logf("answering again %s after unseal", time.Since(unsealed))
}
