package middleware

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// ErrUnavailable means the verifier could not decide; fail closed.
var ErrUnavailable = errors.New("API key verifier unavailable")

// Request is one question to the verifier: the body of POST /v1/verify.
type Request = verdict.VerifyRequest

// Key is a verified API key, as the request context carries it.
type Key struct {
	ID          string            `json:"key_id"`
	Tenant      string            `json:"tenant,omitempty"`
	Name        string            `json:"name"`
	Role        string            `json:"role"`
	Workspace   string            `json:"workspace"`
	Permissions []string          `json:"permissions"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	Metadata    map[string]string `json:"metadata"`
}

// Result is the verifier's answer.
type Result struct {
	Valid bool
	// Code is the decided code; Code.Status() is the HTTP status it means.
	Code verdict.Code
	Key
}

// Forbidden reports whether the key is authentic but denied for this request
// (403) rather than not a valid key (401).
func (r Result) Forbidden() bool { return r.Code.Forbidden() }

// Client calls a verifier's POST /v1/verify.
type Client struct {
	url   string
	http  *http.Client
	ttl   time.Duration
	limit int

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
}

type cached struct {
	res     Result
	expires time.Time
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithHTTPClient sets the HTTP client (default: 2s timeout).
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// WithCacheTTL sets how long an answer is reused (default 50ms; 0 disables).
// It adds to the time a revoked key keeps working in this process.
func WithCacheTTL(d time.Duration) ClientOption { return func(c *Client) { c.ttl = d } }

// WithCacheSize bounds the answers kept (default 10000).
func WithCacheSize(n int) ClientOption { return func(c *Client) { c.limit = n } }

// NewClient returns a client of the verifier at baseURL (e.g. http://127.0.0.1:8080).
func NewClient(baseURL string, opts ...ClientOption) *Client {
	c := &Client{
		url:   strings.TrimRight(baseURL, "/") + verdict.PathVerify,
		http:  &http.Client{Timeout: 2 * time.Second},
		ttl:   50 * time.Millisecond,
		limit: 10_000,
		cache: make(map[[sha256.Size]byte]cached),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Verify asks the verifier. An error wraps ErrUnavailable: fail closed.
func (c *Client) Verify(ctx context.Context, req Request) (Result, error) {
	k := cacheKey(&req)
	now := time.Now()
	if c.ttl > 0 {
		c.mu.Lock()
		hit, ok := c.cache[k]
		c.mu.Unlock()
		if ok && now.Before(hit.expires) {
			return hit.res, nil
		}
	}
	res, err := c.ask(ctx, &req)
	if err != nil {
		return Result{}, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.cache) >= c.limit {
			for old, e := range c.cache {
				if now.After(e.expires) || len(c.cache) >= c.limit {
					delete(c.cache, old)
				}
			}
		}
		c.cache[k] = cached{res: res, expires: now.Add(c.ttl)}
		c.mu.Unlock()
	}
	return res, nil
}

func (c *Client) ask(ctx context.Context, req *Request) (Result, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Result{}, fmt.Errorf("%w: encode request: %v", ErrUnavailable, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return Result{}, fmt.Errorf("%w: verifier answered %s", ErrUnavailable, resp.Status)
	}
	var out verdict.VerifyResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil || out.Code == "" {
		return Result{}, fmt.Errorf("%w: unreadable answer from the verifier", ErrUnavailable)
	}
	return Result{
		Valid: out.Code == verdict.Valid, // trust the code, not a second field
		Code:  out.Code,
		Key: Key{ID: out.KeyID, Tenant: out.Tenant, Name: out.Name, Role: out.Role, Workspace: out.Workspace,
			Permissions: out.Permissions, ExpiresAt: out.ExpiresAt, Metadata: out.Metadata},
	}, nil
}

// cacheKey digests everything the answer depends on; the token itself is not kept.
func cacheKey(r *Request) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range []string{r.Key, r.Tenant, r.Workspace, r.ClientIP} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	for _, p := range r.Permissions {
		h.Write([]byte(p))
		h.Write([]byte{1})
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}
