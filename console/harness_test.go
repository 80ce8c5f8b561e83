package console

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testClock is a settable clock for session and rate-limit expiry.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects the console's log for leak checks.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type harness struct {
	fv      *fakeVault
	console *Console
	srv     *httptest.Server
	log     *syncBuffer
	clock   *testClock
}

// newHarness runs a console over TLS (its cookies are Secure) against a fake Vault.
func newHarness(t testing.TB, tweak func(*Config)) *harness {
	h := &harness{fv: newFakeVault(t), log: &syncBuffer{}, clock: &testClock{t: time.Now()}}
	cfg := Config{VaultAddr: h.fv.srv.URL, Logger: slog.New(slog.NewTextHandler(h.log, nil)), Now: h.clock.now}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	require.NoError(t, err)
	h.console = c
	h.srv = httptest.NewTLSServer(c.Handler())
	t.Cleanup(func() { h.srv.Close(); c.Close() })
	return h
}

// agent is one browser-less user of the console, with its own cookies.
type agent struct {
	t    testing.TB
	h    *harness
	http *http.Client
}

func (h *harness) agent(t testing.TB) *agent {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	c := *h.srv.Client() // a copy: each agent has its own cookies
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &agent{t: t, h: h, http: &c}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (a *agent) get(path string) answer {
	resp, err := a.http.Get(a.h.srv.URL + path)
	require.NoError(a.t, err)
	return readAnswer(a.t, resp)
}

func (a *agent) post(path string, form url.Values) answer {
	resp, err := a.http.PostForm(a.h.srv.URL+path, form)
	require.NoError(a.t, err)
	return readAnswer(a.t, resp)
}

func readAnswer(t testing.TB, resp *http.Response) answer {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the form token on a page.
func (a *agent) csrf(page string) string {
	m := csrfField.FindStringSubmatch(a.get(page).body)
	require.NotNil(a.t, m, "no CSRF field on %s", page)
	return m[1]
}

// signIn signs in and answers the outcome of the POST.
func (a *agent) signIn(user, password string) answer {
	return a.post("/signin", url.Values{"csrf": {a.csrf("/signin")}, "username": {user}, "password": {password}})
}

func (a *agent) mustSignIn(user, password string) {
	ans := a.signIn(user, password)
	require.Equal(a.t, http.StatusSeeOther, ans.status, ans.body)
	require.Equal(a.t, "/keys", ans.header.Get("Location"))
}

var keyPattern = regexp.MustCompile(`vak_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}`)

// create posts the create form with overrides and answers the page.
func (a *agent) create(fields map[string]string) answer {
	form := url.Values{"csrf": {a.csrf("/keys/new")}, "role": {"developer"}, "expiry": {"days"}, "days": {"90"}, "ips": {"all"}}
	for k, v := range fields {
		form.Set(k, v)
	}
	return a.post("/keys", form)
}

// mustCreate creates a key and answers its plaintext from the page.
func (a *agent) mustCreate(name string) string {
	ans := a.create(map[string]string{"name": name})
	require.Equal(a.t, http.StatusOK, ans.status, ans.body)
	key := keyPattern.FindString(ans.body)
	require.NotEmpty(a.t, key, "the key is shown once")
	return key
}

func requireContains(t testing.TB, body string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		require.True(t, strings.Contains(body, p), "page lacks %q:\n%s", p, body)
	}
}
