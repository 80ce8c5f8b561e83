package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

// view is what every page template gets.
type view struct {
	Title   string
	Session *session // nil on the sign-in page
	Flash   string   // a notice from the previous action
	Error   string   // a plain-words error
	Data    any      // the page's own data
}

// CSRF is the session's form token, for templates.
func (v view) CSRF() string {
	if v.Session == nil {
		return ""
	}
	return v.Session.csrf
}

// parsePages parses each page together with the shared layout.
func parsePages(funcs template.FuncMap) (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimPrefix(n, "templates/")
		if base == "layout.html" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes a page; it renders into a buffer first so that a template
// error never leaves half a page (or a key) on the wire.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	t := c.pages[page]
	var buf bytes.Buffer
	if t == nil {
		c.log.Error("no such page template", "page", page)
		http.Error(w, "Something went wrong. Try again.", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.Error("render page", "page", page, "error", err)
		http.Error(w, "Something went wrong. Try again.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// moment is a time for templates: the relative words on the page and the exact
// time on hover.
type moment struct {
	Set      bool
	ISO      string
	Exact    string
	Relative string
	Empty    string // shown when unset ("Never")
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"when": func(rfc3339, empty string) moment { return momentOf(rfc3339, empty, c.now()) },
		"statusLabel": func(s string) string {
			if s == "" {
				return "Unknown"
			}
			return strings.ToUpper(s[:1]) + s[1:]
		},
		"join": strings.Join,
	}
}

func momentOf(rfc3339, empty string, now time.Time) moment {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if rfc3339 == "" || err != nil || t.IsZero() {
		return moment{Empty: empty}
	}
	return moment{Set: true, ISO: t.UTC().Format(time.RFC3339),
		Exact: t.UTC().Format("2 Jan 2006, 15:04:05 UTC"), Relative: relative(t, now)}
}

// relative says how long ago (or how soon) t is, in the words of a calm UI:
// "just now", "3 minutes ago", "in 5 days", "on 2 Jan 2026".
func relative(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var n int
	var unit string
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		n, unit = int(d/time.Minute), "minute"
	case d < 48*time.Hour:
		n, unit = int(d/time.Hour), "hour"
	case d < 60*24*time.Hour:
		n, unit = int(d/(24*time.Hour)), "day"
	default:
		return "on " + t.UTC().Format("2 Jan 2006")
	}
	if n != 1 {
		unit += "s"
	}
	if future {
		return fmt.Sprintf("in %d %s", n, unit)
	}
	return fmt.Sprintf("%d %s ago", n, unit)
}
