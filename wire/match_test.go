package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestGranted(t *testing.T) {
	cases := []struct {
		grants []string
		want   string
		ok     bool
	}{
		{[]string{"*"}, "clusters:read", true},
		{[]string{"clusters:read"}, "clusters:read", true},
		{[]string{"clusters:read"}, "clusters:write", false},
		{[]string{"clusters:*"}, "clusters:delete", true},
		{[]string{"clusters:*"}, "clustersx:delete", false},
		{nil, "a", false},
	}
	for _, c := range cases {
		assert.Equal(t, c.ok, Granted(c.grants, c.want), "%v %s", c.grants, c.want)
	}
}

func TestIntersect(t *testing.T) {
	assert.Equal(t, []string{"a:read"}, Intersect([]string{"*"}, []string{"a:read"}))
	assert.Equal(t, []string{"a:read"}, Intersect([]string{"a:read", "b:read"}, []string{"a:*"}))
	assert.Equal(t, []string{"*"}, Intersect([]string{"*"}, []string{"*"}))
	assert.Empty(t, Intersect([]string{"a:read"}, []string{"b:read"}))
}

func TestWorkspaceGrants(t *testing.T) {
	tenant := Entry{AllowedWorkspaces: []string{"prod", "dev-*"}}
	assert.True(t, tenant.WorkspaceGrants("dev-eu"))
	assert.True(t, tenant.WorkspaceGrants("prod"))
	assert.False(t, tenant.WorkspaceGrants("staging"))
	assert.True(t, tenant.WorkspaceGrants(""))
	pinned := Entry{Workspace: "prod", AllowedWorkspaces: []string{"*"}}
	assert.True(t, pinned.WorkspaceGrants("prod"))
	assert.False(t, pinned.WorkspaceGrants("dev"))
	// The role no longer allows the key's workspace: nothing is granted there.
	narrowed := Entry{Workspace: "prod", AllowedWorkspaces: []string{"dev-*"}}
	assert.False(t, narrowed.WorkspaceGrants("prod"))
	assert.False(t, narrowed.WorkspaceGrants("dev-eu"))
	assert.False(t, narrowed.WorkspaceGrants(""), "a pinned key whose workspace was taken away grants nothing, even unasked")
	assert.True(t, pinned.WorkspaceGrants(""), "a pinned key still allowed passes a request without a workspace")
	roleGone := Entry{Workspace: "prod"}
	assert.False(t, roleGone.WorkspaceGrants("prod"), "no role globs: fail closed")
	assert.False(t, roleGone.WorkspaceGrants(""), "no role globs: fail closed")
	assert.True(t, (&Entry{}).WorkspaceGrants(""), "an unpinned key asked for no workspace passes")
	assert.False(t, WorkspaceAllowed([]string{"[bad"}, "x"))
}
