package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Config.
const (
	DefaultMount       = "apikeys"
	DefaultAuthMethod  = "userpass"
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxLifetime = 8 * time.Hour
	DefaultSignInBurst = 5
	DefaultSignInEvery = 12 * time.Second // 5 a minute once the burst is spent
)

const (
	sessionCookie = "apikeys_console"
	signinCookie  = "apikeys_console_signin"
	maxFormBytes  = 64 << 10
	vaultTimeout  = 10 * time.Second
)

// contentSecurityPolicy allows only the console's own files: no inline script
// or style, no framing, forms post only to the console.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Config configures a Console.
type Config struct {
	VaultAddr   string        // e.g. http://127.0.0.1:8200
	Mount       string        // the plugin's mount, default "apikeys"
	AuthMethod  string        // "userpass" (default) or "ldap": both sign in with a username and password
	AuthMount   string        // the auth method's mount path, default AuthMethod
	HTTPClient  *http.Client  // for Vault; default has a 10s timeout
	Logger      *slog.Logger  // default discards
	IdleTimeout time.Duration // a session unused this long ends
	MaxLifetime time.Duration // a session ends this long after sign-in (or at its token's expiry)
	SignInBurst int           // sign-in attempts per username and per client address at once…
	SignInEvery time.Duration // …then one per this long
	Now         func() time.Time
}

// Console is the tenant admin web console. It holds no Vault token of its own.
type Console struct {
	vault    *vaultAPI
	log      *slog.Logger
	now      func() time.Time
	sessions *sessions
	byUser   *limiter
	byAddr   *limiter
	pages    map[string]*template.Template
	mux      *http.ServeMux
	stop     chan struct{}
	done     sync.WaitGroup
	closing  sync.Once
}

// New validates cfg and builds a Console; Close ends it.
func New(cfg Config) (*Console, error) {
	if cfg.VaultAddr == "" {
		return nil, errors.New("the Vault address is required")
	}
	u, err := url.Parse(cfg.VaultAddr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("the Vault address %q must be an http:// or https:// URL", cfg.VaultAddr)
	}
	if cfg.Mount == "" {
		cfg.Mount = DefaultMount
	}
	if cfg.AuthMethod == "" {
		cfg.AuthMethod = DefaultAuthMethod
	}
	if cfg.AuthMethod != "userpass" && cfg.AuthMethod != "ldap" {
		return nil, fmt.Errorf("auth method %q is not supported: use userpass or ldap", cfg.AuthMethod)
	}
	if cfg.AuthMount == "" {
		cfg.AuthMount = cfg.AuthMethod
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: vaultTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.SignInBurst <= 0 {
		cfg.SignInBurst = DefaultSignInBurst
	}
	if cfg.SignInEvery <= 0 {
		cfg.SignInEvery = DefaultSignInEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Console{
		vault: &vaultAPI{addr: strings.TrimRight(cfg.VaultAddr, "/"), mount: strings.Trim(cfg.Mount, "/"),
			authMount: strings.Trim(cfg.AuthMount, "/"), http: cfg.HTTPClient},
		log:    cfg.Logger,
		now:    cfg.Now,
		byUser: newLimiter(cfg.SignInBurst, cfg.SignInEvery, cfg.Now),
		byAddr: newLimiter(cfg.SignInBurst*4, cfg.SignInEvery/4, cfg.Now),
		stop:   make(chan struct{}),
	}
	c.sessions = &sessions{m: map[string]*session{}, idle: cfg.IdleTimeout, absolute: cfg.MaxLifetime,
		now: cfg.Now, onExpire: c.revokeToken}
	if c.pages, err = parsePages(c.funcs()); err != nil {
		return nil, err
	}
	c.routes()
	c.done.Add(1)
	go c.janitor(min(cfg.IdleTimeout, time.Minute))
	return c, nil
}

// Close stops the janitor and revokes the Vault token of every open session.
func (c *Console) Close() {
	c.closing.Do(func() {
		close(c.stop)
		c.done.Wait()
		for _, t := range c.sessions.drain() {
			c.revokeToken(t)
		}
	})
}

// janitor ends idle and expired sessions (revoking their tokens) and forgets
// old rate-limit buckets.
func (c *Console) janitor(every time.Duration) {
	defer c.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.sessions.sweep()
			c.byUser.prune()
			c.byAddr.prune()
		}
	}
}

// revokeToken revokes a session's Vault token; failure is logged (without the token).
func (c *Console) revokeToken(token string) {
	ctx, cancel := context.WithTimeout(context.Background(), vaultTimeout)
	defer cancel()
	if err := c.vault.revokeSelf(ctx, token); err != nil {
		c.log.Warn("could not revoke a session's Vault token; it ends at its own TTL", "error", err)
	}
}

// Handler is the console's HTTP handler.
func (c *Console) Handler() http.Handler { return c.secure(c.mux) }

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	m.HandleFunc("GET /signin", c.signinPage)
	m.HandleFunc("POST /signin", c.signin)
	m.HandleFunc("POST /signout", c.authed(c.signout))
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/keys", http.StatusSeeOther) })
	m.HandleFunc("GET /keys", c.authed(c.listPage))
	m.HandleFunc("GET /keys/new", c.authed(c.createPage))
	m.HandleFunc("POST /keys", c.authed(c.create))
	m.HandleFunc("GET /keys/{name}", c.authed(c.detailsPage))
	m.HandleFunc("GET /keys/{name}/revoke", c.authed(c.revokePage))
	m.HandleFunc("POST /keys/{name}/revoke", c.authed(c.revoke))
	m.HandleFunc("POST /keys/{name}/revoke-previous", c.authed(c.revokePrevious))
	m.HandleFunc("POST /keys/{name}/disable", c.authed(c.setEnabled(false)))
	m.HandleFunc("POST /keys/{name}/enable", c.authed(c.setEnabled(true)))
	m.HandleFunc("GET /keys/{name}/rotate", c.authed(c.rotatePage))
	m.HandleFunc("POST /keys/{name}/rotate", c.authed(c.rotate))
	m.HandleFunc("GET /reports", c.authed(c.reportsPage))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error.html", view{Title: "Page not found",
			Error: "There is no such page. Go back to your API keys."})
	})
	c.mux = m
}

// secure sets the headers every answer carries and turns a panic into a plain
// error page (never a stack).
func (c *Console) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if strings.HasPrefix(r.URL.Path, "/static/") {
			h.Set("Cache-Control", "public, max-age=3600")
		} else {
			// Pages may show a key or a tenant's records: never cache them.
			h.Set("Cache-Control", "no-store")
			h.Set("Pragma", "no-cache")
		}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				c.log.Error("request failed", "path", r.URL.Path, "panic", fmt.Sprint(v))
				http.Error(w, "Something went wrong. Try again.", http.StatusInternalServerError)
			}
		}()
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// authed runs h with the request's session: without one, a page redirects to
// sign-in and a form is refused. Every POST must carry the session's CSRF token.
func (c *Console) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess *session
		if ck, err := r.Cookie(sessionCookie); err == nil {
			sess = c.sessions.get(ck.Value)
		}
		if sess == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			c.render(w, r, http.StatusForbidden, "error.html", view{Title: "Signed out",
				Error: "Your session has ended. Sign in again, then repeat what you were doing."})
			return
		}
		if r.Method != http.MethodGet && !sameSecret(r.PostFormValue("csrf"), sess.csrf) {
			c.render(w, r, http.StatusForbidden, "error.html", view{Title: "Form expired", Session: sess,
				Error: "This form has expired or did not come from this console. Reload the page and try again."})
			return
		}
		h(w, r, sess)
	}
}

// clientAddr is the peer's address (the console trusts no forwarding header).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ctx bounds a handler's Vault calls.
func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), vaultTimeout)
}
