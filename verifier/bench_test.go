package verifier

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func benchVerifier(b *testing.B) (*Verifier, Request) {
	f := newFakeVault(b)
	opsRole(f)
	key, _ := f.issue("bench", "ops", keyOpts{workspace: "prod"})
	v, _ := startVerifier(b, f, nil)
	req := Request{Key: key, Workspace: "prod", Permissions: []string{"clusters:read"}, ClientIP: localhost}
	if verdict, err := v.Check(context.Background(), req); err != nil || !verdict.Valid() {
		b.Fatalf("warm-up: %v %v", verdict.Code, err)
	}
	return v, req
}

// BenchmarkVerifyHot is the in-process check of a cached key: format,
// checksum, digest, cache, constant-time compare, IP, workspace, permission,
// usage count. It must not allocate.
func BenchmarkVerifyHot(b *testing.B) {
	v, req := benchVerifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if verdict, err := v.Check(ctx, req); err != nil || verdict.Code != CodeValid {
			b.Fatal("not valid")
		}
	}
}

// BenchmarkVerifyParallel is BenchmarkVerifyHot from every core at once.
func BenchmarkVerifyParallel(b *testing.B) {
	v, req := benchVerifier(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if verdict, err := v.Check(ctx, req); err != nil || verdict.Code != CodeValid {
				b.Fatal("not valid")
			}
		}
	})
}

// BenchmarkVerifyHTTP is POST /v1/verify through the handler (no network).
func BenchmarkVerifyHTTP(b *testing.B) {
	v, req := benchVerifier(b)
	h := v.Handler()
	body := `{"key":"` + req.Key + `","workspace":"prod","permissions":["clusters:read"]}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkVerifyHandler is the verifier's own share of POST /v1/verify:
// the handler with its audit line written to a file, on a reused request and
// a response writer that keeps nothing (no httptest allocations, no network).
func BenchmarkVerifyHandler(b *testing.B) {
	f := newFakeVault(b)
	opsRole(f)
	key, _ := f.issue("bench", "ops", keyOpts{workspace: "prod"})
	v, _ := startVerifier(b, f, func(c *Config) { c.AuditLog = filepath.Join(b.TempDir(), "audit.log") })
	h := v.Handler()
	body := []byte(`{"key":"` + key + `","workspace":"prod","permissions":["clusters:read"]}`)
	rd := bytes.NewReader(body)
	r := httptest.NewRequest(http.MethodPost, "/v1/verify", nil)
	r.RemoteAddr = "127.0.0.1:1"
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatal(w.code)
		}
	}
}

// discardWriter is an http.ResponseWriter that keeps the status only.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// BenchmarkBareHandler is the floor BenchmarkVerifyHTTP is compared with: a Go
// handler that reads the body and writes a constant JSON answer.
func BenchmarkBareHandler(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"valid":true,"code":"VALID"}`)
	})
	body := `{"key":"vak_0123456789abcdef_0123456789012345678901234567890123456789012ABCDEF"}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
	}
}

// BenchmarkVerifyCold is a miss for every check: 32 concurrent callers each
// present keys the verifier has never seen, so every check goes through the
// loader's batches to the fake Vault over loopback HTTP, the decode of the
// answer, the DEK (unwrapped once, then cached), the digest and the cache
// insert. The fake's own serving is in the figure: compare before/after pairs
// measured in one run.
func BenchmarkVerifyCold(b *testing.B) {
	f := newFakeVault(b)
	opsRole(f)
	keys := make([]string, b.N)
	for i := range keys {
		keys[i], _ = f.issue(fmt.Sprintf("k%d", i), "ops", keyOpts{workspace: "prod"})
	}
	v, _ := startVerifier(b, f, nil)
	ctx := context.Background()
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := Request{Key: keys[next.Add(1)-1], Workspace: "prod", Permissions: []string{"clusters:read"}, ClientIP: localhost}
			if verdict, err := v.Check(ctx, req); err != nil || verdict.Code != CodeValid {
				b.Fatalf("not valid: %v %v", verdict.Code, err)
			}
		}
	})
	b.StopTimer()
	f.mu.Lock()
	defer f.mu.Unlock()
	asked := 0
	for _, ids := range f.lookups {
		asked += len(ids)
	}
	b.ReportMetric(float64(asked)/float64(max(len(f.lookups), 1)), "keys/lookup")
}
