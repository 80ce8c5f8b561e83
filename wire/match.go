package wire

import (
	"path"
	"strings"
)

// Granted reports whether a permission set grants want. A grant matches
// exactly, as "*" (everything), or as "<resource>:*" (every action on that resource).
func Granted(grants []string, want string) bool {
	for _, g := range grants {
		if grantMatches(g, want) {
			return true
		}
	}
	return false
}

func grantMatches(g, want string) bool {
	if g == "*" || g == want {
		return true
	}
	if strings.HasSuffix(g, ":*") {
		return strings.HasPrefix(want, g[:len(g)-1])
	}
	return false
}

// Intersect returns the permissions both sets grant: each permission of one
// set that the other grants. Order follows a then b, without duplicates.
func Intersect(a, b []string) []string {
	out := make([]string, 0, len(a))
	seen := make(map[string]bool, len(a)+len(b))
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range a {
		if Granted(b, p) {
			add(p)
		}
	}
	for _, p := range b {
		if Granted(a, p) {
			add(p)
		}
	}
	return out
}

// WorkspaceAllowed reports whether ws matches one of the globs ("*" matches all;
// otherwise shell-style patterns such as "dev-*").
func WorkspaceAllowed(globs []string, ws string) bool {
	for _, g := range globs {
		if g == "*" || g == ws {
			return true
		}
		if ok, err := path.Match(g, ws); err == nil && ok {
			return true
		}
	}
	return false
}

// WorkspaceGrants reports whether a key may act in ws: its effective workspaces
// are its own workspace ∩ the role's current globs (the globs alone when it has
// none), so narrowing a role's allowed_workspaces also caps keys pinned to a
// workspace. An empty ws asks for no workspace check, except that a key pinned
// to a workspace its role no longer allows grants nothing at all: it was made
// to act only there, so once that is taken away it must not pass a request
// that merely omits the workspace (fail closed, WORKSPACE_MISMATCH).
func (e *Entry) WorkspaceGrants(ws string) bool {
	if e.Workspace != "" {
		return (ws == "" || ws == e.Workspace) && WorkspaceAllowed(e.AllowedWorkspaces, e.Workspace)
	}
	return ws == "" || WorkspaceAllowed(e.AllowedWorkspaces, ws)
}
