package verifier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

// countingVault answers every request with status and counts them.
func countingVault(t *testing.T, status int, body string) (string, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func newTestVaultAPI(t *testing.T, addrs ...string) *vaultAPI {
	v, err := newVaultAPI(&Config{VaultAddrs: addrs, Mount: "apikeys"}, newMetrics())
	require.NoError(t, err)
	return v
}

func TestVaultCallMovesOnWhenNoVaultAnswers(t *testing.T) {
	up, n := countingVault(t, http.StatusOK, `{"data":{"seq":1,"entries":[]}}`)
	v := newTestVaultAPI(t, deadAddr(t), up)
	_, err := v.call(context.Background(), "changes", func(c *api.Client) (*api.Secret, error) {
		return c.Logical().ReadWithContext(context.Background(), "apikeys/changes")
	})
	require.NoError(t, err)
	assert.Equal(t, int32(1), n.Load())
	assert.Equal(t, 1, v.ring.Current(), "the next call starts at the address that answered")
}

// Any Vault answer is final for the verifier, a 503 included: the request may
// have reached a node that acted on it (usage reports are not idempotent).
func TestVaultCallTakesAnyAnswerAsFinal(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusForbidden} {
		first, n1 := countingVault(t, status, `{"errors":["no"]}`)
		second, n2 := countingVault(t, http.StatusOK, `{"data":{}}`)
		v := newTestVaultAPI(t, first, second)
		var denied atomic.Int32
		v.denied = func() { denied.Add(1) }
		_, err := v.write(context.Background(), "usage", "apikeys/usage", map[string]any{})
		require.Error(t, err, "status %d", status)
		assert.Equal(t, int32(1), n1.Load(), "status %d", status)
		assert.Equal(t, int32(0), n2.Load(), "status %d: the next address must not be tried", status)
		assert.Equal(t, status == http.StatusForbidden, denied.Load() == 1, "status %d: only a 403 asks for a new token", status)
	}
}

// Two attempts per call, but an address that did not answer is left behind,
// so with the first two of three down the third answers on the next call.
func TestVaultCallReachesEveryAddressOverCalls(t *testing.T) {
	up, n := countingVault(t, http.StatusOK, `{"data":{}}`)
	v := newTestVaultAPI(t, deadAddr(t), deadAddr(t), up)
	ctx := context.Background()
	_, err := v.write(ctx, "usage", "apikeys/usage", map[string]any{})
	require.Error(t, err)
	assert.Equal(t, int32(0), n.Load())
	_, err = v.write(ctx, "usage", "apikeys/usage", map[string]any{})
	require.NoError(t, err)
	assert.Equal(t, int32(1), n.Load())
}
