package verifier

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Issue 14 defect 14: a 503 said what Vault said, Vault's URL included. The
// answer is now one fixed body; the cause is in the log only.
func TestUnavailableBodyCarriesNoInternals(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	const vaultSays = "storage backend consul://secret-host:8500 failed"
	target, err := url.Parse(f.srv.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0) // parked polls cut at the end of the test
	// The feed works; every lookup fails with Vault's own error text.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/lookup") {
			http.Error(w, `{"errors":["`+vaultSays+`"]}`, http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	logs := &lockedBuffer{}
	v, _ := startVerifier(t, f, func(c *Config) {
		c.VaultAddrs = []string{front.URL}
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	})
	h := v.Handler()
	want := `{"error":"` + verdict.UnavailableMessage + `"}` + "\n"

	status, _ := postVerify(t, h, jsonBody(t, map[string]any{"key": key}))
	require.Equal(t, http.StatusServiceUnavailable, status)
	r := httptest.NewRequest(http.MethodPost, verdict.PathVerify, strings.NewReader(jsonBody(t, map[string]any{"key": key})))
	r.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, want, w.Body.String(), "POST /v1/verify")

	w = authRequest(h, map[string]string{"X-API-Key": key}, "127.0.0.1:1")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, want, w.Body.String(), "forward-auth")
	for _, leak := range []string{"secret-host", target.Host, "lookup"} {
		assert.NotContains(t, w.Body.String(), leak)
	}
	assert.Contains(t, logs.String(), "secret-host", "the cause is logged for the operator")
}
