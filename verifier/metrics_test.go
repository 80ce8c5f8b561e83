package verifier

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// Every code has its decision counter and latency series, so a new code is
// counted from the start.
func TestEveryCodeIsMeasured(t *testing.T) {
	m := newMetrics()
	for _, code := range verdict.Codes() {
		assert.Contains(t, m.decisions, code)
		for _, ep := range []string{endpointVerify, endpointAuth} {
			assert.Contains(t, m.latency[ep], code, ep)
		}
	}
}

// Latency is recorded per endpoint and code, 503s included, and the build is
// described by apikeys_verifier_build_info.
func TestLatencyHistogramsAndBuildInfo(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{workspace: "prod"})
	v, _ := startVerifier(t, f, nil)
	h := v.Handler()
	postVerify(t, h, jsonBody(t, map[string]any{"key": key}))
	postVerify(t, h, jsonBody(t, map[string]any{"key": "hello"}))
	authRequest(h, map[string]string{"X-API-Key": key, verdict.HeaderWorkspace: "dev-eu"}, "127.0.0.1:1")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := w.Body.String()
	for _, series := range []string{
		`apikeys_verifier_request_duration_seconds_count{code="VALID",endpoint="verify"} 1`,
		`apikeys_verifier_request_duration_seconds_count{code="INVALID_FORMAT",endpoint="verify"} 1`,
		`apikeys_verifier_request_duration_seconds_count{code="WORKSPACE_MISMATCH",endpoint="auth"} 1`,
		`apikeys_verifier_request_duration_seconds_count{code="UNAVAILABLE",endpoint="auth"} 0`,
		`apikeys_verifier_build_info{goversion="` + runtime.Version() + `",version="` + Version + `"} 1`,
		`apikeys_verifier_cache_capacity 100000`,
		`apikeys_verifier_cache_entries 1`,
	} {
		assert.Contains(t, body, series)
	}

	v.metrics.observe(endpointAuth, "", ErrUnavailable, 0)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	assert.Contains(t, w.Body.String(), `apikeys_verifier_request_duration_seconds_count{code="UNAVAILABLE",endpoint="auth"} 1`)
}
