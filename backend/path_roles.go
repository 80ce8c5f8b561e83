package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

const storageRolePrefix = "role/"

// Role is a set of permissions and limits that keys are issued under.
type Role struct {
	Name              string        `json:"name"`
	Permissions       []string      `json:"permissions"`
	AllowedWorkspaces []string      `json:"allowed_workspaces"`
	AllowedCIDRs      []string      `json:"allowed_cidrs,omitempty"`
	TTL               time.Duration `json:"ttl"`
	MaxTTL            time.Duration `json:"max_ttl"`
	MaxKeys           int           `json:"max_keys"`
}

func (b *Backend) getRole(ctx context.Context, s logical.Storage, name string) (*Role, error) {
	return readThrough(ctx, s, b.roles, name, storageRolePrefix+name)
}

func roleFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"name":               {Type: framework.TypeString, Description: "Name of the role.", Required: true},
		"permissions":        {Type: framework.TypeCommaStringSlice, Description: "Permissions keys of this role carry, e.g. clusters:read, clusters:*, or * for all. Lowering them caps every existing key at once."},
		"allowed_workspaces": {Type: framework.TypeCommaStringSlice, Description: "Workspaces (globs such as dev-*) keys of this role may be issued for; * means tenant-wide. Default *."},
		"allowed_cidrs":      {Type: framework.TypeCommaStringSlice, Description: "CIDR blocks clients of this role's keys must come from (empty = anywhere)."},
		"ttl":                {Type: framework.TypeDurationSecond, Description: "Default lifetime of keys of this role (0 = mount default_ttl, else max_ttl)."},
		"max_ttl":            {Type: framework.TypeDurationSecond, Description: "Longest lifetime of keys of this role; with it set, keys cannot be made never-expiring (ttl=0)."},
		"max_keys":           {Type: framework.TypeInt, Description: "Most live keys of this role in one tenant (0 = unlimited)."},
		"revoke_keys":        {Type: framework.TypeBool, Description: "On delete: also revoke every live key of the role. Without it, deleting a role that has keys fails."},
	}
}

func pathRoles(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:        "roles/" + nameSegment("name"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "role"},
			Fields:         roleFields(),
			ExistenceCheck: b.roleExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathRoleRead},
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathRoleWrite},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRoleWrite},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathRoleDelete},
			},
			HelpSynopsis:    pathRolesHelpSyn,
			HelpDescription: pathRolesHelpDesc,
		},
		{
			Pattern:      "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "roles"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathRoleList},
			},
			HelpSynopsis:    "List roles.",
			HelpDescription: "List the names of all roles of this mount.",
		},
	}
}

func (b *Backend) roleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if validName("role", name) != nil {
		return false, nil // the handler explains what is wrong with it
	}
	r, err := b.getRole(ctx, req.Storage, name)
	return r != nil, err
}

func (b *Backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validName("role", name); err != nil {
		return badRequest(err)
	}
	r, err := b.getRole(ctx, req.Storage, name)
	if err != nil || r == nil {
		return nil, err
	}
	count, err := b.index.RoleCount(ctx, req.Storage, r.Name)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{
		"name":               r.Name,
		"permissions":        r.Permissions,
		"allowed_workspaces": r.AllowedWorkspaces,
		"allowed_cidrs":      nonNil(r.AllowedCIDRs),
		"ttl":                int64(r.TTL.Seconds()),
		"max_ttl":            int64(r.MaxTTL.Seconds()),
		"max_keys":           r.MaxKeys,
		"key_count":          count,
	}}, nil
}

func (b *Backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validName("role", name); err != nil {
		return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
	}
	// Exclusive: issuance under this role waits, so it sees the role as written.
	lock := b.roleLock(name)
	lock.Lock()
	defer lock.Unlock()
	old, err := b.getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	r := &Role{Name: name, AllowedWorkspaces: []string{"*"}}
	if old != nil {
		copied := *old
		r = &copied
	}
	if v, ok := d.GetOk("permissions"); ok {
		r.Permissions = v.([]string)
	}
	if v, ok := d.GetOk("allowed_workspaces"); ok {
		r.AllowedWorkspaces = v.([]string)
	}
	if v, ok := d.GetOk("allowed_cidrs"); ok {
		if r.AllowedCIDRs, err = normalizeCIDRs(v.([]string)); err != nil {
			return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
		}
	}
	if v, ok := d.GetOk("ttl"); ok {
		r.TTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_ttl"); ok {
		r.MaxTTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_keys"); ok {
		r.MaxKeys = v.(int)
	}
	if msg := r.validate(); msg != "" {
		return logical.ErrorResponse(msg), logical.ErrInvalidRequest
	}
	// Every write publishes, creation included: a role deleted and created
	// again must reach verifiers that still hold keys of the old one.
	return seqAnswer(b.commitScope(ctx, req.Storage, roleScope(name), wire.OpRoleUpdated, func(ctx context.Context) error {
		return writeThrough(ctx, req.Storage, b.roles, name, storageRolePrefix+name, r)
	}))
}

func (r *Role) validate() string {
	if err := validPermissions(r.Permissions); err != nil {
		return err.Error()
	}
	if len(r.AllowedWorkspaces) == 0 {
		return "allowed_workspaces must not be empty: list workspace globs, or * for tenant-wide"
	}
	if err := validGlobs(r.AllowedWorkspaces); err != nil {
		return err.Error()
	}
	switch {
	case r.TTL < 0 || r.MaxTTL < 0:
		return "ttl and max_ttl must not be negative"
	case r.MaxTTL > 0 && r.TTL > r.MaxTTL:
		return fmt.Sprintf("ttl %s is longer than max_ttl %s", r.TTL, r.MaxTTL)
	case r.MaxKeys < 0:
		return "max_keys must be 0 (unlimited) or positive"
	}
	return ""
}

func (b *Backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validName("role", name); err != nil {
		return badRequest(err)
	}
	// Exclusive: no key of the role is issued while it is counted and removed.
	lock := b.roleLock(name)
	lock.Lock()
	defer lock.Unlock()
	r, err := b.getRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return logical.ErrorResponse("no role named %q", printable(name)), logical.ErrInvalidRequest
	}
	count, err := b.index.RoleCount(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if resp, err := b.refuseOrRevokeKeys(ctx, req.Storage, d, fmt.Sprintf("role %q", name), count, ListFilter{Role: name}); resp != nil || err != nil {
		return resp, err
	}
	return seqAnswer(b.commitScope(ctx, req.Storage, roleScope(name), wire.OpRoleDeleted, func(ctx context.Context) error {
		return deleteThrough(ctx, req.Storage, b.roles, name, storageRolePrefix+name)
	}))
}

func (b *Backend) pathRoleList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, storageRolePrefix)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

const pathRolesHelpSyn = `Manage roles: the permissions, workspaces, network limits and lifetimes keys are issued under.`

const pathRolesHelpDesc = `
A key's effective permissions are its own ∩ its role's current permissions, so
updating a role takes effect on every key of the role at once (verifiers are
told through the change feed). A role that still has live keys can be deleted
only with revoke_keys=true.
`
