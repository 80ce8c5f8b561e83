package verifier_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verifier"
)

// feedGate is a proxy in front of Vault that can hold the verifier's feed
// reads: the verifier is "paused" while Vault moves on.
type feedGate struct {
	mu    sync.Mutex
	gate  chan struct{}
	held  int
	proxy *httptest.Server
}

func newFeedGate(t *testing.T, vaultAddr string) *feedGate {
	u, err := url.Parse(vaultAddr)
	require.NoError(t, err)
	g := &feedGate{}
	rp := httputil.NewSingleHostReverseProxy(u)
	g.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/changes") {
			g.mu.Lock()
			g.held++
			gate := g.gate
			g.mu.Unlock()
			if gate != nil {
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(g.proxy.Close)
	return g
}

func (g *feedGate) heldCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// hold holds feed reads from now on and returns once one is held.
func (g *feedGate) hold(t *testing.T) {
	g.mu.Lock()
	g.gate = make(chan struct{})
	n := g.held
	g.mu.Unlock()
	require.Eventually(t, func() bool { return g.heldCount() > n }, 10*time.Second, time.Millisecond)
}

// step lets one read through and returns once the next one is held.
func (g *feedGate) step(t *testing.T) {
	g.mu.Lock()
	gate, n := g.gate, g.held
	g.mu.Unlock()
	gate <- struct{}{}
	require.Eventually(t, func() bool { return g.heldCount() > n }, 10*time.Second, time.Millisecond)
}

func (g *feedGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
}

// TestIntegrationBacklogIsServedByLookup is issue 14's defect 3 on a real
// Vault and plugin: a paused verifier resumes with more than one page of feed
// backlog, and the revocation of a key it has cached is on the second page.
// After the first page it has heard the head, so it must answer by lookup
// (REVOKED), not from its cache (VALID, on the old code), and stay ready.
func TestIntegrationBacklogIsServedByLookup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Vault dev server")
	}
	var gate *feedGate
	s := startStack(t, func(c *verifier.Config) {
		gate = newFeedGate(t, c.VaultAddrs[0])
		c.VaultAddrs = []string{gate.proxy.URL}
		c.FeedWait = 100 * time.Millisecond
		// The held feed read must outlast writing the backlog (1,005 writes,
		// seconds on a loaded machine). With the 3 s default it timed out and
		// was retried while held, and a step whose release landed on a read the
		// verifier had just abandoned moved nothing (make test, 06:45 run:
		// "it heard a head beyond its cursor" failed with head = cursor = 2).
		c.VaultTimeout = time.Minute
	})
	key := s.issue(t, "hot", nil)
	require.Equal(t, "VALID", s.code(t, key, nil))
	require.Equal(t, "VALID", s.code(t, key, nil))

	gate.hold(t)
	const page = 1000 // the plugin's feed page
	admin(t, s.vault, "apikeys/roles/noise", map[string]any{"permissions": "a:read"})
	for i := range page + 5 {
		perm := []string{"a:read", "b:read"}[i%2]
		admin(t, s.vault, "apikeys/roles/noise", map[string]any{"permissions": perm})
	}
	_, err := s.vault.Client.Logical().Delete("apikeys/tenants/acme/keys/hot")
	require.NoError(t, err)

	gate.step(t) // the first page only
	st := s.verifier.Status()
	require.Greater(t, st.FeedHead, st.FeedCursor, "it heard a head beyond its cursor")
	assert.Equal(t, "REVOKED", s.code(t, key, nil), "no VALID from the cache while behind")
	assert.Equal(t, "catching_up", s.verifier.Status().State)
	resp, err := httpClient.Get(s.url + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "ready while catching up")

	gate.release()
	require.Eventually(t, func() bool { st := s.verifier.Status(); return st.State == "ready" && st.FeedCursor == st.FeedHead },
		10*time.Second, 5*time.Millisecond)
	assert.Equal(t, "REVOKED", s.code(t, key, nil))
}
