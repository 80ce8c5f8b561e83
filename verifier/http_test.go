package verifier

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func postVerify(t testing.TB, h http.Handler, body string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:5555"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func jsonBody(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestVerifyEndpoint(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("prod", "ops", keyOpts{workspace: "prod", metadata: map[string]string{"team": "sre"}})
	dev, _ := f.issue("dev", "ops", keyOpts{workspace: "dev-eu"})
	disabled, disabledID := f.issue("off", "ops", keyOpts{})
	f.setStatus(disabledID, wire.StatusDisabled, wire.OpDisabled)
	revoked, revokedID := f.issue("gone", "ops", keyOpts{})
	f.setStatus(revokedID, wire.StatusRevoked, wire.OpRevoked)
	past := time.Now().Add(-time.Hour)
	expired, _ := f.issue("old", "ops", keyOpts{expires: &past})
	unknown, _ := token.Generate("vak")
	v, _ := startVerifier(t, f, nil)
	h := v.Handler()

	for _, tc := range []struct {
		body map[string]any
		want Code
	}{
		{map[string]any{"key": key}, CodeValid},
		{map[string]any{"key": key, "workspace": "prod", "permissions": []string{"clusters:read"}}, CodeValid},
		{map[string]any{"key": "hello"}, CodeInvalidFormat},
		{map[string]any{"key": unknown.String()}, CodeNotFound},
		{map[string]any{"key": revoked}, CodeRevoked},
		{map[string]any{"key": disabled}, CodeDisabled},
		{map[string]any{"key": expired}, CodeExpired},
		{map[string]any{"key": key, "client_ip": "192.0.2.7"}, CodeIPNotAllowed},
		{map[string]any{"key": dev, "workspace": "prod"}, CodeWorkspaceMismatch},
		{map[string]any{"key": key, "permissions": []string{"clusters:delete"}}, CodeInsufficientPermissions},
	} {
		t.Run(string(tc.want), func(t *testing.T) {
			status, out := postVerify(t, h, jsonBody(t, tc.body))
			require.Equal(t, http.StatusOK, status, "a decided answer is 200")
			assert.Equal(t, string(tc.want), out["code"])
			assert.Equal(t, tc.want == CodeValid, out["valid"])
			if tc.want != CodeValid {
				assert.NotContains(t, out, "metadata", "metadata only when valid")
			}
		})
	}

	t.Run("VALID response fields", func(t *testing.T) {
		_, out := postVerify(t, h, jsonBody(t, map[string]any{"key": key}))
		for _, field := range []string{"valid", "code", "key_id", "name", "role", "workspace", "permissions", "expires_at", "metadata"} {
			assert.Contains(t, out, field)
		}
		assert.Equal(t, id, out["key_id"])
		assert.Equal(t, "prod", out["name"])
		assert.Equal(t, "ops", out["role"])
		assert.Equal(t, map[string]any{"team": "sre"}, out["metadata"])
	})

	for name, body := range map[string]string{
		"malformed JSON":       `{not json`,
		"not an object":        `["key"]`,
		"wrong type":           `{"key": 42}`,
		"trailing data":        `{"key":"a"} {"key":"b"}`,
		"missing key":          `{"workspace":"prod"}`,
		"empty key":            `{"key":""}`,
		"empty body":           ``,
		"bad client_ip":        jsonBody(t, map[string]any{"key": key, "client_ip": "not-an-ip"}),
		"permissions not list": jsonBody(t, map[string]any{"key": key, "permissions": "clusters:read"}),
		"body over 16 KiB":     `{"key":"` + strings.Repeat("a", MaxBodyBytes) + `"}`,
		"huge junk":            strings.Repeat("a", 200_000),
	} {
		t.Run("400 "+name, func(t *testing.T) {
			status, out := postVerify(t, h, body)
			assert.Equal(t, http.StatusBadRequest, status)
			assert.NotEmpty(t, out["error"])
			assert.NotContains(t, out["error"], key[len(key)-20:], "errors never quote the body")
		})
	}

	t.Run("GET is not allowed", func(t *testing.T) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1/verify", nil))
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
	})
}

func TestHealthReadyMetrics(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, _ := f.issue("k", "ops", keyOpts{})
	v, _ := startVerifier(t, f, func(c *Config) { c.StaleIfError = 200 * time.Millisecond })
	h := v.Handler()
	postVerify(t, h, jsonBody(t, map[string]any{"key": key}))
	get := func(path string) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w.Code, w.Body.String()
	}
	code, _ := get("/healthz")
	assert.Equal(t, http.StatusOK, code)
	code, body := get("/readyz")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"state":"ready"`)
	code, body = get("/metrics")
	assert.Equal(t, http.StatusOK, code)
	for _, series := range []string{
		`apikeys_verifier_decisions_total{code="VALID"} 1`,
		"apikeys_verifier_cache_misses_total 1",
		"apikeys_verifier_vault_request_duration_seconds_bucket{op=\"lookup\"",
		"apikeys_verifier_feed_lag_seconds",
		"apikeys_verifier_serving_stale 0",
		"apikeys_verifier_unavailable 0",
	} {
		assert.Contains(t, body, series)
	}
	assert.Contains(t, "\n"+body, "\n# TYPE ")
	assert.NotContains(t, body, key[len(key)-30:], "no token in metrics")

	f.setDown(true)
	require.Eventually(t, func() bool { c, _ := get("/readyz"); return c == http.StatusServiceUnavailable }, time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { s, _ := postVerify(t, h, jsonBody(t, map[string]any{"key": key})); return s == 503 }, 2*time.Second, 5*time.Millisecond)
	_, body = get("/metrics")
	assert.Contains(t, body, "apikeys_verifier_unavailable 1")
	status, out := postVerify(t, h, `{"key":"hello"}`)
	assert.Equal(t, http.StatusServiceUnavailable, status, "fail closed for everything")
	assert.NotEmpty(t, out["error"])
}
