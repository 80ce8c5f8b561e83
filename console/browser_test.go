package console

// Browser tests: Debian's chromium driven by chromedp against the console and
// the fake Vault. Controls are found by their accessible role and name, as a
// screen reader finds them (DESIGN §8 lists the names).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/dom"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// findChromium answers the browser to drive. A missing browser skips the test
// on a developer's machine but fails it under CI, where it must be installed.
func findChromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped under -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("chromium is not installed (apt-get install chromium); under CI=true this test fails instead")
	}
	t.Fatal("chromium is not installed, and CI is set: the browser tests must run (apt-get install chromium)")
	return ""
}

// browser is one chromium tab on the console, with screenshots of every page
// it saw; they are written to a kept directory when the test fails, or always
// to $CONSOLE_SCREENSHOTS when set.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots []shot
}

type shot struct {
	name string
	png  []byte
}

func newBrowser(t *testing.T, base string) *browser {
	exe := findChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,                               // tests may run as root
		chromedp.Flag("ignore-certificate-errors", true), // the console's test server has a self-signed certificate
		chromedp.WindowSize(1280, 860),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: bctx, base: base}
	t.Cleanup(func() {
		if t.Failed() {
			b.snap("at-failure")
		}
		b.saveShots()
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	require.NoError(t, chromedp.Do(bctx), "start chromium")
	return b
}

func (b *browser) saveShots() {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" && !b.t.Failed() {
		return
	}
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "console-screenshots-"); err != nil {
			b.t.Logf("cannot keep screenshots: %v", err)
			return
		}
	}
	_ = os.MkdirAll(dir, 0o755)
	for i, s := range b.shots {
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%02d-%s.png", b.t.Name(), i+1, s.name)), s.png, 0o644)
	}
	b.t.Logf("screenshots of %s kept in %s", b.t.Name(), dir)
}

// snap takes a screenshot of the current page.
func (b *browser) snap(name string) {
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err == nil {
		b.shots = append(b.shots, shot{name: name, png: png})
	}
}

// do runs steps, failing the test on error, then screenshots the page.
func (b *browser) do(name string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, steps...), name)
	b.snap(name)
}

// navigateAfter runs a step that loads a new page (a click, Enter on a link or
// a submit button) and waits for that page's load.
func navigateAfter(step chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, step)(ctx, t)
		return err
	})
}

// byRole finds the elements with this accessible role and name, as assistive
// technology computes them.
func byRole(role, name string) chromedp.QueryOption {
	return chromedp.ByFunc(func(ctx context.Context, t *chromedp.Target, n *chromedp.Node) ([]cdp.NodeID, error) {
		res, err := cdp.Call(ctx, t, accessibility.QueryAXTree, accessibility.QueryAXTreeParams{
			NodeID: n.NodeID, AccessibleName: name, Role: role})
		if err != nil {
			return nil, err
		}
		var backend []cdp.BackendNodeID
		for _, ax := range res.Nodes {
			if !ax.Ignored && ax.BackendDOMNodeID != 0 {
				backend = append(backend, ax.BackendDOMNodeID)
			}
		}
		if len(backend) == 0 {
			return nil, nil
		}
		ids, err := cdp.Call(ctx, t, dom.PushNodesByBackendIDsToFrontend, dom.PushNodesByBackendIDsToFrontendParams{BackendNodeIDs: backend})
		return ids.NodeIDs, err
	})
}

// control is a selector for the control with that role and accessible name.
func control(role, name string) (string, chromedp.QueryOption) {
	return role + " " + name, byRole(role, name)
}

func (b *browser) click(role, name string) chromedp.Action[chromedp.Void] {
	label, opt := control(role, name)
	return navigateAfter(chromedp.Click(label, opt))
}

// has tells whether the page has an element of that role (any when "") and
// accessible name.
func (b *browser) has(role, name string) bool {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	l, o := control(role, name)
	_, err := chromedp.Run(ctx, chromedp.Nodes(l, o, chromedp.AtLeast(1)))
	return err == nil
}

// void drops an action's value.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	require.NoError(b.t, err, js)
	return s
}

func (b *browser) html() string { return b.eval(`document.documentElement.outerHTML`) }

// focused says what has the keyboard focus: its role-relevant tag and text or label.
func (b *browser) focused() string {
	return b.eval(`(function(){var e=document.activeElement; var l=e.labels&&e.labels.length?e.labels[0].textContent:""; return (e.tagName+" "+(l||e.textContent||e.value)).trim()})()`)
}

func (b *browser) key(keys string) {
	b.t.Helper()
	require.NoError(b.t, chromedp.Do(b.ctx, chromedp.KeyEvent(keys)))
}

func (b *browser) signIn(user, password string) {
	b.t.Helper()
	user1, userOpt := control("textbox", "Username")
	pass1, passOpt := control("textbox", "Password")
	b.do("sign-in-"+user,
		chromedp.Navigate(b.base+"/signin"),
		chromedp.SendKeys(user1, user, userOpt),
		chromedp.SendKeys(pass1, password, passOpt),
	)
	b.do("signed-in-"+user, b.click("button", "Sign in"))
	require.Contains(b.t, b.html(), "Sign out")
}

func TestBrowserTenantAdminCreatesAndRevokesAKey(t *testing.T) {
	findChromium(t)
	h := newHarness(t, nil)
	b := newBrowser(t, h.srv.URL)
	start := time.Now()

	// Sign in as acme's admin: the empty list says what to do.
	b.signIn("alice", "alice-pw")
	page := b.html()
	require.Contains(t, page, "No API keys yet")
	require.Contains(t, page, "Create API key")

	// Keyboard only: focus the "Create API key" control and walk the form with Tab.
	label, opt := control("link", "Create API key")
	b.do("create-form", chromedp.Focus(label, opt), navigateAfter(chromedp.KeyEvent("\r")))
	assert.Equal(t, "INPUT Name", b.focused(), "the form starts at Name")
	b.key("ci-deploy")
	b.key("\t")
	assert.Equal(t, "INPUT Description", b.focused())
	b.key("Deploys from CI")
	b.key("\t")
	assert.Equal(t, "SELECT Role", b.focused())
	b.key("d") // type-ahead picks "developer"
	b.key("\t")
	assert.Equal(t, "INPUT Workspace", b.focused())
	b.key("\t")
	assert.Equal(t, "INPUT Expire after", b.focused())
	b.key(kb.ArrowDown) // arrows move within the radio group: "Never expire"
	assert.Equal(t, "INPUT Never expire", b.focused())
	b.key("\t")
	assert.Equal(t, "INPUT Allow all IP addresses", b.focused())
	for range 4 { // the CIDR box, two allow-lists, then the submit button
		b.key("\t")
	}
	require.Equal(t, "BUTTON Generate key", b.focused())
	b.snap("create-filled")
	resp, err := chromedp.RunResponse(b.ctx, chromedp.KeyEvent("\r"))
	require.NoError(t, err)
	b.snap("key-shown-once")

	// The key is shown once, with Copy and a warning, in a no-store answer.
	assert.Equal(t, "no-store", resp.Headers["Cache-Control"], "headers %v", resp.Headers)
	assert.NotContains(t, resp.URL, "vak_")
	key, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.ID("new-key")))
	require.NoError(t, err)
	require.Regexp(t, `^vak_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}$`, key)
	assert.Contains(t, b.html(), "only time it is shown")
	copyLabel, copyOpt := control("button", "Copy")
	b.do("copied", chromedp.Click(copyLabel, copyOpt), void(chromedp.Poll[bool](`document.querySelector(".copied").textContent !== ""`)))
	k := h.fv.keys["acme"]["ci-deploy"]
	require.NotNil(t, k)
	assert.Equal(t, "developer", k.Role)
	assert.Equal(t, "Deploys from CI", k.Description)
	assert.Empty(t, k.ExpiresAt, "Never expire was chosen by keyboard")

	// Done: the key is gone from the page, the history and the browser's storage.
	b.do("after-done", b.click("link", "Done"))
	assert.NotContains(t, b.html(), key)
	assert.Contains(t, b.html(), "ci-deploy")
	assert.Equal(t, "0", b.eval(`String(localStorage.length + sessionStorage.length)`))
	hist, err := chromedp.Run(b.ctx, chromedp.NavigationEntries())
	require.NoError(t, err)
	for _, e := range hist.Entries {
		assert.NotContains(t, e.URL, key[4:20])
	}
	for _, col := range []string{"Name", "Status", "Created by", "Created", "Last used", "Expires"} {
		assert.True(t, b.has("columnheader", col), "column %q", col)
	}

	// Details sheet: usage in relative words, the exact time on hover.
	h.fv.use("acme", "ci-deploy", h.clock.now().Add(-3*time.Minute), "198.51.100.9", 7)
	b.do("details", b.click("link", "ci-deploy"))
	assert.Contains(t, b.html(), "3 minutes ago")
	assert.Regexp(t, `UTC$`, b.eval(`Array.from(document.querySelectorAll("time")).find(e => e.textContent === "3 minutes ago").title`),
		"the exact time on hover")

	// Revoke with confirmation.
	b.do("revoke-confirm", b.click("link", "Revoke API key"))
	assert.Contains(t, b.html(), "cannot be undone")
	b.do("revoked", b.click("button", "Revoke API key"))
	assert.Contains(t, b.html(), "badge-revoked")
	assert.Nil(t, h.fv.keys["acme"]["ci-deploy"])

	// A request without the CSRF token is refused, even from the signed-in page.
	st, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](
		`fetch("/keys", {method: "POST", body: new URLSearchParams({name: "forged", role: "developer", expiry: "never", ips: "all"})}).then(r => String(r.status))`,
		chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	assert.Equal(t, "403", st)
	assert.Nil(t, h.fv.keys["acme"]["forged"])

	// Another tenant's admin does not see acme's keys.
	alice2 := h.agent(t)
	alice2.mustSignIn("alice", "alice-pw")
	alice2.mustCreate("acme-prod")
	b.do("signed-out", b.click("button", "Sign out"))
	b.signIn("bob", "bob-pw")
	assert.NotContains(t, b.html(), "acme-prod")
	assert.Contains(t, b.html(), "No API keys yet")
	b.do("other-tenant-details", chromedp.Navigate(b.base+"/keys/acme-prod"))
	assert.Contains(t, b.html(), "There is no API key named")
	t.Logf("browser walk took %s", time.Since(start).Round(time.Millisecond))
}

// TestBrowserPagesLookCalm fills a tenant with keys of every status and
// screenshots the pages (kept with CONSOLE_SCREENSHOTS=dir, for the README and
// for a human look); it checks what a screenshot cannot: badges and hovers.
func TestBrowserPagesLookCalm(t *testing.T) {
	findChromium(t)
	h := newHarness(t, nil)
	h.fv.maxKeys = 100
	seed := h.agent(t)
	seed.mustSignIn("alice", "alice-pw")
	seed.create(map[string]string{"name": "ci-deploy", "description": "GitHub Actions deploys", "role": "developer"})
	seed.create(map[string]string{"name": "billing-export", "role": "readonly", "expiry": "never", "ips": "restrict", "cidrs": "203.0.113.0/24", "allowlists": "office"})
	seed.create(map[string]string{"name": "old-integration", "role": "admin", "days": "5"})
	seed.create(map[string]string{"name": "staging-bot", "role": "developer"})
	h.fv.use("acme", "ci-deploy", h.clock.now().Add(-3*time.Minute), "198.51.100.9", 1284)
	h.fv.use("acme", "billing-export", h.clock.now().Add(-26*time.Hour), "203.0.113.17", 96)
	h.fv.use("acme", "old-integration", h.clock.now().Add(-120*24*time.Hour), "192.0.2.44", 3)
	h.fv.keys["acme"]["staging-bot"].Status = "disabled"

	b := newBrowser(t, h.srv.URL)
	b.signIn("alice", "alice-pw")
	b.snap("list")
	for _, badge := range []string{"badge-active", "badge-disabled"} {
		assert.Contains(t, b.html(), badge)
	}
	b.do("list-filtered", chromedp.Navigate(b.base+"/keys?status=disabled"))
	assert.Contains(t, b.html(), "staging-bot")
	assert.NotContains(t, b.html(), "ci-deploy")
	b.do("create-page", chromedp.Navigate(b.base+"/keys/new"))
	for _, name := range []string{"Name", "Description", "Role", "Workspace", "Never expire", "Allow all IP addresses", "Restrict to trusted IP addresses"} {
		assert.True(t, b.has("", name), "a control named %q", name)
	}
	b.do("details-ci-deploy", chromedp.Navigate(b.base+"/keys/ci-deploy"))
	b.do("rotate-page", chromedp.Navigate(b.base+"/keys/ci-deploy/rotate"))
	b.do("rotated", b.click("button", "Rotate"))
	b.do("details-in-grace", chromedp.Navigate(b.base+"/keys/ci-deploy"))
	assert.Contains(t, b.html(), "Revoke now")
	b.do("disabled-flash", b.click("button", "Disable"))
	assert.Contains(t, b.html(), "is disabled")
	b.do("reports", chromedp.Navigate(b.base+"/reports"))
	assert.Contains(t, b.html(), "old-integration")
	if strings.Contains(b.html(), "unsafe") {
		t.Error("page mentions unsafe")
	}
}
