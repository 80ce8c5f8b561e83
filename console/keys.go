package console

import (
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// pageSize is the number of keys on one page of the list.
const pageSize = 25

// keyName is the plugin's name rule (a word character at each end, dots and
// dashes inside); checked here too so a bad name never reaches a URL.
var keyName = regexp.MustCompile(`^\w([\w.-]{0,126}\w)?$`)

var statusFilters = []string{"active", "disabled", "expired"}

type listData struct {
	Keys   []Key
	Status string
	After  string
	Next   string
}

// AllOfRole tells whether the key asked for every permission of its role
// ("*"): the page says so in words rather than show a bare asterisk.
func (k Key) AllOfRole() bool { return len(k.Permissions) == 1 && k.Permissions[0] == "*" }

// Path is the details URL of a key, escaped.
func (k Key) Path() string { return "/keys/" + url.PathEscape(k.Name) }

func (c *Console) listPage(w http.ResponseWriter, r *http.Request, sess *session) {
	status, after := r.URL.Query().Get("status"), r.URL.Query().Get("after")
	if !slices.Contains(statusFilters, status) {
		status = ""
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	page, err := c.vault.listKeys(ctx, sess.token, sess.tenant, status, after, pageSize)
	v := view{Title: "API keys", Session: sess, Flash: c.sessions.takeFlash(sess.id),
		Data: listData{Keys: page.Keys, Status: status, After: after, Next: page.Next}}
	if err != nil {
		v.Error = plainError(err)
	}
	c.render(w, r, http.StatusOK, "list.html", v)
}

// createForm is the create page's fields, kept to re-show them after an error.
type createForm struct {
	Name, Description, Role, Workspace string
	Expiry                             string // "days" or "never"
	Days                               string
	IPs                                string // "all" or "restrict"
	CIDRs                              string
	Allowlists                         []string
	Roles                              []string // choices
	AllAllowlists                      []string // choices
}

// Chose tells whether the allow-list name was picked (for re-showing the form).
func (f createForm) Chose(name string) bool { return slices.Contains(f.Allowlists, name) }

func (c *Console) createPage(w http.ResponseWriter, r *http.Request, sess *session) {
	c.renderCreate(w, r, sess, http.StatusOK, createForm{Expiry: "days", Days: "90", IPs: "all"}, "")
}

func (c *Console) renderCreate(w http.ResponseWriter, r *http.Request, sess *session, status int, f createForm, msg string) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	var err error
	if f.Roles, err = c.vault.roles(ctx, sess.token); err != nil && msg == "" {
		msg = plainError(err)
	}
	if f.AllAllowlists, err = c.vault.allowlists(ctx, sess.token, sess.tenant); err != nil && msg == "" {
		msg = plainError(err)
	}
	c.render(w, r, status, "create.html", view{Title: "Create API key", Session: sess, Error: msg, Data: f})
}

// parseCreate reads and checks the form, answering the request or a message.
func parseCreate(r *http.Request) (createForm, CreateRequest, string) {
	f := createForm{
		Name: strings.TrimSpace(r.PostFormValue("name")), Description: strings.TrimSpace(r.PostFormValue("description")),
		Role: r.PostFormValue("role"), Workspace: strings.TrimSpace(r.PostFormValue("workspace")),
		Expiry: r.PostFormValue("expiry"), Days: strings.TrimSpace(r.PostFormValue("days")),
		IPs: r.PostFormValue("ips"), CIDRs: r.PostFormValue("cidrs"), Allowlists: r.PostForm["allowlists"],
	}
	req := CreateRequest{Role: f.Role, Workspace: f.Workspace, Description: f.Description}
	switch {
	case f.Name == "":
		return f, req, "Enter a name for the key."
	case !keyName.MatchString(f.Name):
		return f, req, "That name is not valid. Use letters, digits, dots, dashes and underscores (up to 128), starting and ending with a letter or digit."
	case f.Role == "":
		return f, req, "Choose a role."
	case len(f.Description) > 1000:
		return f, req, "The description is too long: keep it under 1000 characters."
	}
	switch f.Expiry {
	case "never":
		req.TTL = "0"
	case "days":
		days, err := strconv.Atoi(f.Days)
		if err != nil || days < 1 || days > 3650 {
			return f, req, "Enter the number of days until the key expires (1 to 3650), or choose Never expire."
		}
		req.TTL = strconv.Itoa(days*24) + "h"
	default:
		return f, req, "Choose when the key expires."
	}
	switch f.IPs {
	case "all":
	case "restrict":
		cidrs, bad := parseCIDRs(f.CIDRs)
		if bad != "" {
			return f, req, "“" + bad + "” is not an IP address or range. Use CIDR notation such as 203.0.113.0/24."
		}
		if len(cidrs) == 0 && len(f.Allowlists) == 0 {
			return f, req, "Add at least one trusted IP range or allow-list, or choose Allow all IP addresses."
		}
		req.AllowedCIDRs, req.Allowlists = cidrs, f.Allowlists
	default:
		return f, req, "Choose which IP addresses may use the key."
	}
	return f, req, ""
}

// parseCIDRs splits on commas and white space; a bare address becomes a /32 or /128.
func parseCIDRs(s string) (cidrs []string, bad string) {
	for _, field := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		if p, err := netip.ParsePrefix(field); err == nil {
			cidrs = append(cidrs, p.Masked().String())
			continue
		}
		a, err := netip.ParseAddr(field)
		if err != nil {
			if len(field) > 60 {
				field = field[:60] + "…"
			}
			return nil, field
		}
		cidrs = append(cidrs, netip.PrefixFrom(a, a.BitLen()).String())
	}
	return cidrs, ""
}

type shownKey struct {
	Secret  string
	Key     Key
	Rotated bool
}

// create issues the key and shows it in this very answer: no redirect, so the
// key is never in a URL, and the page is no-store like every page.
func (c *Console) create(w http.ResponseWriter, r *http.Request, sess *session) {
	f, req, msg := parseCreate(r)
	if msg != "" {
		c.renderCreate(w, r, sess, http.StatusBadRequest, f, msg)
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	out, err := c.vault.createKey(ctx, sess.token, sess.tenant, f.Name, req)
	if err != nil {
		c.log.Info("create key refused", "tenant", sess.tenant, "name", f.Name, "error", err)
		c.renderCreate(w, r, sess, http.StatusBadRequest, f, plainError(err))
		return
	}
	c.log.Info("key created", "tenant", sess.tenant, "name", f.Name, "key_id", out.Key.KeyID)
	c.render(w, r, http.StatusOK, "shown.html", view{Title: "Save your API key", Session: sess,
		Data: shownKey{Secret: out.Secret, Key: out.Key}})
}

// keyFromPath reads the key named in the URL, rendering an error page when it
// cannot; ok=false means the answer is written.
func (c *Console) keyFromPath(w http.ResponseWriter, r *http.Request, sess *session) (*Key, bool) {
	name := r.PathValue("name")
	if !keyName.MatchString(name) {
		c.render(w, r, http.StatusNotFound, "error.html", view{Title: "No such key", Session: sess,
			Error: "There is no API key with that name."})
		return nil, false
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	k, err := c.vault.readKey(ctx, sess.token, sess.tenant, name)
	if err != nil {
		status := http.StatusBadGateway
		if ve, ok := err.(*vaultError); ok && ve.status == http.StatusForbidden {
			status = http.StatusForbidden
		}
		c.render(w, r, status, "error.html", view{Title: "API key", Session: sess, Error: plainError(err)})
		return nil, false
	}
	if k == nil {
		c.render(w, r, http.StatusNotFound, "error.html", view{Title: "No such key", Session: sess,
			Error: "There is no API key named “" + name + "”. It may have been revoked."})
		return nil, false
	}
	return k, true
}

func (c *Console) detailsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	k, ok := c.keyFromPath(w, r, sess)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "details.html", view{Title: k.Name, Session: sess,
		Flash: c.sessions.takeFlash(sess.id), Data: k})
}

func (c *Console) revokePage(w http.ResponseWriter, r *http.Request, sess *session) {
	k, ok := c.keyFromPath(w, r, sess)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "revoke.html", view{Title: "Revoke " + k.Name, Session: sess, Data: k})
}

// revoke revokes the name (and its keys in grace) and shows the outcome.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, sess *session) {
	k, ok := c.keyFromPath(w, r, sess)
	if !ok {
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	out, err := c.vault.revokeKey(ctx, sess.token, sess.tenant, k.Name)
	if err != nil {
		c.render(w, r, http.StatusBadRequest, "revoke.html", view{Title: "Revoke " + k.Name, Session: sess,
			Error: plainError(err), Data: k})
		return
	}
	c.log.Info("key revoked", "tenant", sess.tenant, "name", k.Name, "key_id", k.KeyID)
	k.Status = "revoked"
	if out.LastUsedAt != "" { // the revocation's own answer is the latest word on the key's last use
		k.LastUsedAt, k.LastUsedFrom, k.UseCount = out.LastUsedAt, out.LastUsedFrom, out.UseCount
	}
	c.render(w, r, http.StatusOK, "revoked.html", view{Title: "API key revoked", Session: sess, Data: k})
}

// revokePrevious revokes one rotated-out key still in grace, by key_id.
func (c *Console) revokePrevious(w http.ResponseWriter, r *http.Request, sess *session) {
	k, ok := c.keyFromPath(w, r, sess)
	if !ok {
		return
	}
	id := r.PostFormValue("key_id")
	if !slices.ContainsFunc(k.PreviousKeys, func(p PreviousKey) bool { return p.KeyID == id }) {
		c.sessions.setFlash(sess.id, "That earlier key is no longer in its grace period.")
	} else {
		ctx, cancel := c.ctx(r)
		defer cancel()
		if err := c.vault.revokeKeyID(ctx, sess.token, sess.tenant, id); err != nil {
			c.sessions.setFlash(sess.id, plainError(err))
		} else {
			c.sessions.setFlash(sess.id, "The earlier key "+id+" is revoked.")
		}
	}
	http.Redirect(w, r, k.Path(), http.StatusSeeOther)
}

// setEnabled disables or enables a key, then shows its details again.
func (c *Console) setEnabled(enabled bool) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, sess *session) {
		k, ok := c.keyFromPath(w, r, sess)
		if !ok {
			return
		}
		ctx, cancel := c.ctx(r)
		defer cancel()
		msg := "API key " + k.Name + " is disabled: requests with it are refused until you enable it."
		if enabled {
			msg = "API key " + k.Name + " is enabled again."
		}
		if err := c.vault.setEnabled(ctx, sess.token, sess.tenant, k.Name, enabled); err != nil {
			msg = plainError(err)
		}
		c.sessions.setFlash(sess.id, msg)
		http.Redirect(w, r, k.Path(), http.StatusSeeOther)
	}
}

// graces are the rotate page's choices: how long the current key keeps working.
var graces = []struct{ Value, Label string }{
	{"0s", "No grace: the current key stops working now"},
	{"1h", "1 hour"},
	{"24h", "24 hours"},
	{"168h", "7 days"},
}

type rotateData struct {
	Key    *Key
	Graces []struct{ Value, Label string }
}

func (c *Console) rotatePage(w http.ResponseWriter, r *http.Request, sess *session) {
	k, ok := c.keyFromPath(w, r, sess)
	if !ok {
		return
	}
	c.render(w, r, http.StatusOK, "rotate.html", view{Title: "Rotate " + k.Name, Session: sess,
		Data: rotateData{Key: k, Graces: graces}})
}

// rotate issues a new secret for the name and shows it once, like create.
func (c *Console) rotate(w http.ResponseWriter, r *http.Request, sess *session) {
	k, ok := c.keyFromPath(w, r, sess)
	if !ok {
		return
	}
	grace := r.PostFormValue("grace")
	if !slices.ContainsFunc(graces, func(g struct{ Value, Label string }) bool { return g.Value == grace }) {
		grace = "0s"
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	out, err := c.vault.rotateKey(ctx, sess.token, sess.tenant, k.Name, grace)
	if err != nil {
		c.render(w, r, http.StatusBadRequest, "rotate.html", view{Title: "Rotate " + k.Name, Session: sess,
			Error: plainError(err), Data: rotateData{Key: k, Graces: graces}})
		return
	}
	c.log.Info("key rotated", "tenant", sess.tenant, "name", k.Name, "key_id", out.Key.KeyID, "grace", grace)
	c.render(w, r, http.StatusOK, "shown.html", view{Title: "Save your new API key", Session: sess,
		Data: shownKey{Secret: out.Secret, Key: out.Key, Rotated: true}})
}

type reportsData struct {
	Expiring, Stale Page
	Within, Unused  string
}

// reportsPage shows this tenant's keys expiring within 30 days and keys unused
// for 90 days.
func (c *Console) reportsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d := reportsData{Within: "30 days", Unused: "90 days"}
	v := view{Title: "Reports", Session: sess}
	var err error
	if d.Expiring, err = c.vault.report(ctx, sess.token, sess.tenant, "expiring", "720h", 100); err != nil {
		v.Error = plainError(err)
	}
	if d.Stale, err = c.vault.report(ctx, sess.token, sess.tenant, "stale", "2160h", 100); err != nil && v.Error == "" {
		v.Error = plainError(err)
	}
	v.Data = d
	c.render(w, r, http.StatusOK, "reports.html", v)
}
