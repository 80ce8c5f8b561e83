package verifier_test

// Tests and benchmarks of verifier/inprocess against this package's fake
// Vault (export_test.go), side by side with the HTTP path.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/verifier"
	"github.com/vault-apikeys/vault-apikeys/verifier/inprocess"
	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

func startInProcess(t testing.TB, tweak func(*verifier.Config)) (*verifier.TestVault, *inprocess.Checker) {
	t.Helper()
	tv := verifier.NewTestVault(t)
	cfg := tv.Config()
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := inprocess.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	require.Eventually(t, func() bool { return c.Status().Ready }, 5*time.Second, 2*time.Millisecond, "never followed the feed")
	return tv, c
}

func serveFrom(h http.Handler, remote, key string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/clusters", nil)
	r.RemoteAddr = remote
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestInProcessMiddleware(t *testing.T) {
	// Short polls keep the feed fresh between changes, so only SetDown below
	// lets stale-if-error run out (and the adapter answer 503).
	tv, c := startInProcess(t, func(cfg *verifier.Config) { cfg.FeedWait, cfg.StaleIfError = 50*time.Millisecond, time.Second })
	key, keyID := tv.Issue("web", "prod", map[string]string{"team": "infra"})
	var seen middleware.Key
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k, ok := middleware.KeyFromContext(r.Context())
		require.True(t, ok, "the verified key is in the request context")
		seen = k
		w.WriteHeader(http.StatusNoContent)
	})
	prod := middleware.WithWorkspace(func(*http.Request) string { return "prod" })
	read := inprocess.Middleware(c, middleware.RequirePermissions("clusters:read"), prod)(app)
	admin := inprocess.Middleware(c, middleware.RequirePermissions("admin"), prod)(app)

	w := serveFrom(read, "127.0.0.1:4000", key)
	require.Equal(t, http.StatusNoContent, w.Code, w.Body.String())
	assert.Equal(t, keyID, seen.ID)
	assert.Equal(t, "web", seen.Name)
	assert.Equal(t, "ops", seen.Role)
	assert.Equal(t, "prod", seen.Workspace)
	assert.Contains(t, seen.Permissions, "clusters:read")
	assert.Equal(t, map[string]string{"team": "infra"}, seen.Metadata)

	for _, tc := range []struct {
		name, remote, key string
		h                 http.Handler
		status            int
		code              verdict.Code
	}{
		{"no key", "127.0.0.1:4000", "", read, http.StatusUnauthorized, ""},
		{"not a key", "127.0.0.1:4000", "hello", read, http.StatusUnauthorized, verdict.InvalidFormat},
		{"outside the allowed addresses", "192.0.2.10:4000", key, read, http.StatusForbidden, verdict.IPNotAllowed},
		{"unparseable peer address", "not-an-address", key, read, http.StatusForbidden, verdict.IPNotAllowed},
		{"permission not granted", "127.0.0.1:4000", key, admin, http.StatusForbidden, verdict.InsufficientPermissions},
	} {
		w := serveFrom(tc.h, tc.remote, tc.key)
		assert.Equal(t, tc.status, w.Code, tc.name)
		if tc.code == "" { // no key at all: the middleware says how to send one, with no code
			assert.Contains(t, w.Body.String(), "send the API key", tc.name)
		} else {
			assert.Contains(t, w.Body.String(), `"code":"`+string(tc.code)+`"`, tc.name)
		}
		if tc.key != "" {
			assert.NotContains(t, w.Body.String(), tc.key, "%s: the answer never echoes the key", tc.name)
		}
	}

	tv.Revoke(keyID)
	require.Eventually(t, func() bool { return serveFrom(read, "127.0.0.1:4000", key).Code == http.StatusUnauthorized },
		2*time.Second, time.Millisecond, "a revocation reaches the in-process verifier through the feed")
	assert.Contains(t, serveFrom(read, "127.0.0.1:4000", key).Body.String(), string(verdict.Revoked))

	other, _ := tv.Issue("other", "prod", nil)
	require.Equal(t, http.StatusNoContent, serveFrom(read, "127.0.0.1:4000", other).Code)
	tv.SetDown(true)
	require.Eventually(t, func() bool { return serveFrom(read, "127.0.0.1:4000", other).Code == http.StatusServiceUnavailable },
		5*time.Second, 5*time.Millisecond, "fails closed once Vault has been gone for stale-if-error")
}

// TestInProcessTenant: the adapter passes the pinned tenant to the verifier
// and the verified key in the context carries the key's tenant.
func TestInProcessTenant(t *testing.T) {
	tv, c := startInProcess(t, nil)
	key, keyID := tv.IssueIn("acme", "web")
	var seen middleware.Key
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = middleware.KeyFromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	acme := inprocess.Middleware(c, middleware.RequireTenant("acme"))(app)
	globex := inprocess.Middleware(c, middleware.RequireTenant("globex"))(app)

	require.Equal(t, http.StatusNoContent, serveFrom(acme, "127.0.0.1:4000", key).Code)
	assert.Equal(t, keyID, seen.ID)
	assert.Equal(t, "acme", seen.Tenant)
	w := serveFrom(globex, "127.0.0.1:4000", key)
	assert.Equal(t, http.StatusForbidden, w.Code)
	assert.Contains(t, w.Body.String(), `"code":"`+string(verdict.TenantMismatch)+`"`)
	tv.Revoke(keyID)
	require.Eventually(t, func() bool { return serveFrom(acme, "127.0.0.1:4000", key).Code == http.StatusUnauthorized },
		2*time.Second, time.Millisecond)
	w = serveFrom(globex, "127.0.0.1:4000", key)
	assert.Equal(t, http.StatusForbidden, w.Code, "a revoked key of another tenant is a mismatch, not REVOKED")
	assert.NotContains(t, w.Body.String(), string(verdict.Revoked))
}

func TestInProcessVerifyHotPathDoesNotAllocate(t *testing.T) {
	tv, c := startInProcess(t, nil)
	key, _ := tv.Issue("k", "prod", nil)
	req := middleware.Request{Key: key, Workspace: "prod", Permissions: []string{"clusters:read"}, ClientIP: "127.0.0.1"}
	ctx := context.Background()
	res, err := c.Verify(ctx, req)
	require.NoError(t, err)
	require.True(t, res.Valid)
	assert.Zero(t, testing.AllocsPerRun(1000, func() {
		if res, err := c.Verify(ctx, req); err != nil || !res.Valid {
			t.Fatal("not valid")
		}
	}))
}

func benchInProcess(b *testing.B) (*inprocess.Checker, middleware.Request) {
	tv, c := startInProcess(b, nil)
	key, _ := tv.Issue("bench", "prod", nil)
	req := middleware.Request{Key: key, Workspace: "prod", Permissions: []string{"clusters:read"}, ClientIP: "127.0.0.1"}
	if res, err := c.Verify(context.Background(), req); err != nil || !res.Valid {
		b.Fatalf("warm-up: %v %v", res.Code, err)
	}
	return c, req
}

// BenchmarkInProcessVerifyHot is a Go server checking a cached key in its own
// process (verifier/inprocess): the target is under 1 µs and no allocation.
func BenchmarkInProcessVerifyHot(b *testing.B) {
	c, req := benchInProcess(b)
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if res, err := c.Verify(ctx, req); err != nil || !res.Valid {
			b.Fatal("not valid")
		}
	}
	// On a shared machine ns/op counts time spent waiting for a core; the
	// process's CPU time per check is the cost itself.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discard is a ResponseWriter that keeps nothing, so the middleware benchmarks
// measure the middleware and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func benchMiddleware(b *testing.B, c middleware.Checker, key string) {
	ok := 0
	h := middleware.Middleware(c, middleware.RequirePermissions("clusters:read"),
		middleware.WithWorkspace(func(*http.Request) string { return "prod" }))(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ok++ }))
	r := httptest.NewRequest(http.MethodGet, "/clusters", nil)
	r.RemoteAddr = "127.0.0.1:4000"
	r.Header.Set("Authorization", "Bearer "+key)
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	if ok != b.N {
		b.Fatalf("%d of %d requests passed", ok, b.N)
	}
}

// BenchmarkInProcessMiddleware is a request through middleware.Middleware
// checked in process (compare BenchmarkHTTPMiddleware).
func BenchmarkInProcessMiddleware(b *testing.B) {
	c, req := benchInProcess(b)
	benchMiddleware(b, c, req.Key)
}

// BenchmarkHTTPMiddleware is the same request checked by a verifier over
// loopback HTTP (middleware.Client, its answer cache off).
func BenchmarkHTTPMiddleware(b *testing.B) {
	tv := verifier.NewTestVault(b)
	key, _ := tv.Issue("bench", "prod", nil)
	v, err := verifier.New(tv.Config())
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx); close(done) }()
	b.Cleanup(func() { cancel(); <-done; _ = v.Close() })
	srv := httptest.NewServer(v.Handler())
	b.Cleanup(srv.Close)
	benchMiddleware(b, middleware.NewClient(srv.URL, middleware.WithCacheTTL(0)), key)
}
