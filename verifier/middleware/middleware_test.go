package middleware

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// stubVerifier answers POST /v1/verify from a table of key → code.
func stubVerifier(t *testing.T, codes map[string]string) (*httptest.Server, *atomic.Int32, *atomic.Value) {
	calls := &atomic.Int32{}
	last := &atomic.Value{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var req Request
		require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
		last.Store(req)
		code := codes[req.Key]
		if code == "" {
			http.Error(w, `{"error":"down"}`, http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"valid": code == string(verdict.Valid), "code": code, "key_id": "id-" + req.Key,
			"tenant": "acme", "name": "n", "role": "ops", "workspace": "prod"})
	}))
	t.Cleanup(srv.Close)
	return srv, calls, last
}

func serve(h http.Handler, headers map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	r.RemoteAddr = "192.0.2.10:1234"
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestMiddleware(t *testing.T) {
	srv, calls, last := stubVerifier(t, map[string]string{
		"good": string(verdict.Valid), "gone": string(verdict.Revoked), "elsewhere": string(verdict.WorkspaceMismatch), "junk": string(verdict.InvalidFormat),
	})
	var seen Key
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := KeyFromContext(r.Context())
		require.True(t, ok)
		seen = k
		w.WriteHeader(http.StatusNoContent)
	})
	h := Middleware(NewClient(srv.URL, WithCacheTTL(0)),
		RequirePermissions("clusters:read"),
		WithWorkspace(func(*http.Request) string { return "prod" }))(app)

	w := serve(h, map[string]string{"Authorization": "Bearer good"})
	assert.Equal(t, http.StatusNoContent, w.Code)
	assert.Equal(t, "id-good", seen.ID)
	assert.Equal(t, "ops", seen.Role)
	req := last.Load().(Request)
	assert.Equal(t, []string{"clusters:read"}, req.Permissions)
	assert.Equal(t, "prod", req.Workspace)
	assert.Equal(t, "192.0.2.10", req.ClientIP, "the end user's address is passed on")

	assert.Equal(t, http.StatusNoContent, serve(h, map[string]string{"X-API-Key": "good"}).Code)
	for key, want := range map[string]int{"gone": 401, "junk": 401, "elsewhere": 403, "down": 503} {
		w := serve(h, map[string]string{"X-API-Key": key})
		assert.Equal(t, want, w.Code, key)
		var body map[string]string
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), key)
		assert.NotEmpty(t, body["error"], key)
		assert.NotContains(t, w.Body.String(), key+`"`, "never echo the key")
		if want == 401 {
			assert.NotEmpty(t, w.Header().Get("WWW-Authenticate"))
		}
	}
	w = serve(h, nil)
	assert.Equal(t, http.StatusUnauthorized, w.Code)
	before := calls.Load()
	serve(h, map[string]string{"Authorization": "Basic abc"})
	assert.Equal(t, before, calls.Load(), "no key, no call")
}

func TestClientCache(t *testing.T) {
	srv, calls, _ := stubVerifier(t, map[string]string{"good": string(verdict.Valid)})
	c := NewClient(srv.URL, WithCacheTTL(50*time.Millisecond))
	ctx := t.Context()
	for range 5 {
		res, err := c.Verify(ctx, Request{Key: "good"})
		require.NoError(t, err)
		assert.True(t, res.Valid)
	}
	assert.Equal(t, int32(1), calls.Load(), "a burst is answered from the cache")
	_, _ = c.Verify(ctx, Request{Key: "good", Workspace: "other"})
	assert.Equal(t, int32(2), calls.Load(), "the cache key covers the whole request")
	// Above all the tenant: one tenant's answer must never serve another's request.
	_, _ = c.Verify(ctx, Request{Key: "good", Tenant: "globex"})
	assert.Equal(t, int32(3), calls.Load(), "the cache key covers the tenant")
	time.Sleep(60 * time.Millisecond)
	_, _ = c.Verify(ctx, Request{Key: "good"})
	assert.Equal(t, int32(4), calls.Load(), "answers expire")
	_, err := c.Verify(ctx, Request{Key: "down"})
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = c.Verify(ctx, Request{Key: "down"})
	assert.ErrorIs(t, err, ErrUnavailable, "failures are not cached")

	small := NewClient(srv.URL, WithCacheSize(2))
	for _, ws := range []string{"a", "b", "c", "d"} {
		_, _ = small.Verify(ctx, Request{Key: "good", Workspace: ws})
	}
	assert.LessOrEqual(t, len(small.cache), 2)
}

func TestClientUnreachable(t *testing.T) {
	c := NewClient("http://127.0.0.1:1", WithHTTPClient(&http.Client{Timeout: time.Second}))
	_, err := c.Verify(t.Context(), Request{Key: "k"})
	assert.ErrorIs(t, err, ErrUnavailable)
}

func TestMiddlewarePinsTheTenant(t *testing.T) {
	srv, _, last := stubVerifier(t, map[string]string{"good": string(verdict.Valid), "other": string(verdict.TenantMismatch)})
	var seen Key
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = KeyFromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	c := NewClient(srv.URL, WithCacheTTL(0))

	h := Middleware(c, RequireTenant("acme"))(app)
	// A client header naming another tenant changes nothing: the option decides.
	assert.Equal(t, http.StatusNoContent, serve(h, map[string]string{"X-API-Key": "good", verdict.HeaderTenant: "globex"}).Code)
	assert.Equal(t, "acme", last.Load().(Request).Tenant)
	assert.Equal(t, "acme", seen.Tenant, "the verified key in the context carries its tenant")
	w := serve(h, map[string]string{"X-API-Key": "other"})
	assert.Equal(t, http.StatusForbidden, w.Code, "TENANT_MISMATCH is a 403")

	h = Middleware(c, WithTenant(func(r *http.Request) string { return r.URL.Query().Get("t") }))(app)
	r := httptest.NewRequest(http.MethodGet, "/x?t=initech", nil)
	r.Header.Set("X-API-Key", "good")
	h.ServeHTTP(httptest.NewRecorder(), r)
	assert.Equal(t, "initech", last.Load().(Request).Tenant, "per request")

	h = Middleware(c)(app)
	serve(h, map[string]string{"X-API-Key": "good", verdict.HeaderTenant: "globex"})
	assert.Empty(t, last.Load().(Request).Tenant, "no option, no pin: never a client header")
}
