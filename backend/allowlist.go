package backend

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Named allow-lists (YugabyteDB Aeon's "IP allow lists"): a tenant's reusable
// sets of CIDR blocks that keys name. A key's own address allow-set is its
// allowed_cidrs ∪ the CIDRs of the lists it names; changing a list changes it
// for every key naming it at once (one feed entry for the list).

const storageAllowlistPrefix = "allowlist/"

// maxAllowlistsPerKey bounds the lists one key names.
const maxAllowlistsPerKey = 16

// Allowlist is a named CIDR list of a tenant, stored at allowlist/<tenant>/<name>.
type Allowlist struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	CIDRs       []string `json:"cidrs"`
}

func allowlistKey(tenant, name string) string {
	return storageAllowlistPrefix + tenant + "/" + name
}

// getAllowlist reads a tenant's list (nil when there is none).
func (b *Backend) getAllowlist(ctx context.Context, s logical.Storage, tenant, name string) (*Allowlist, error) {
	key := allowlistKey(tenant, name)
	return readThrough(ctx, s, b.allowlists, key, key)
}

// checkAllowlists says which of names the tenant does not have. The caller
// holds the tenant lock (shared), so none is deleted meanwhile.
func (b *Backend) checkAllowlists(ctx context.Context, s logical.Storage, tenant string, names []string) error {
	for _, name := range names {
		l, err := b.getAllowlist(ctx, s, tenant, name)
		if err != nil {
			return err
		}
		if l == nil {
			return invalid("tenant %q has no allow-list named %q: create it first with `vault write apikeys/tenants/%s/allowlists/%s cidrs=…`", printable(tenant), printable(name), printable(tenant), printable(name))
		}
	}
	return nil
}

// validAllowlistNames checks the allowlists field of a key.
func validAllowlistNames(names []string) error {
	if len(names) > maxAllowlistsPerKey {
		return fmt.Errorf("a key may name at most %d allow-lists", maxAllowlistsPerKey)
	}
	for _, n := range names {
		if err := validName("allow-list", n); err != nil {
			return err
		}
	}
	return nil
}

// keyCIDRs is a key's own address allow-set: its allowed_cidrs and the CIDRs
// of the lists it names. A list that cannot be found (deleted by hand) adds
// an entry that is no CIDR, which verifiers match to nothing: a key that
// names a list is never opened to every address by that list's loss.
func (b *Backend) keyCIDRs(ctx context.Context, s logical.Storage, rec *Record) ([]string, error) {
	if len(rec.Allowlists) == 0 {
		return rec.AllowedCIDRs, nil
	}
	out := slices.Clone(rec.AllowedCIDRs)
	for _, name := range rec.Allowlists {
		l, err := b.getAllowlist(ctx, s, rec.Tenant, name)
		if err != nil {
			return nil, err
		}
		if l == nil {
			out = append(out, "missing-allowlist:"+name)
			continue
		}
		out = append(out, l.CIDRs...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func pathAllowlists(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      tenantPrefix() + "allowlists/" + nameSegment("name"),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "allowlist"},
			Fields: map[string]*framework.FieldSchema{
				"tenant":      tenantField(),
				"name":        {Type: framework.TypeString, Required: true, Description: "Name of the allow-list, unique in the tenant."},
				"cidrs":       {Type: framework.TypeCommaStringSlice, Description: "CIDR blocks (at least one, at most 64) clients of keys naming this list may come from."},
				"description": {Type: framework.TypeString, Description: "Free text shown in read (up to 1024 bytes)."},
			},
			ExistenceCheck: b.allowlistExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathAllowlistRead},
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathAllowlistWrite, Summary: "Create or change a named allow-list; applies at once to every key naming it."},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathAllowlistWrite},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathAllowlistDelete, Summary: "Delete a named allow-list no live key names."},
			},
			HelpSynopsis:    "Named, reusable IP allow-lists of a tenant, for keys to name (allowlists=…).",
			HelpDescription: pathAllowlistHelpDesc,
		},
		{
			Pattern:      tenantPrefix() + "allowlists/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "allowlists"},
			Fields:       map[string]*framework.FieldSchema{"tenant": tenantField()},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathAllowlistList},
			},
			HelpSynopsis:    "List the tenant's named allow-lists.",
			HelpDescription: pathAllowlistHelpDesc,
		},
	}
}

// allowlistArgs reads and checks the tenant and name path segments.
func allowlistArgs(d *framework.FieldData) (string, string, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return "", "", err
	}
	name := d.Get("name").(string)
	return tenant, name, validName("allow-list", name)
}

func (b *Backend) allowlistExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	tenant, name, err := allowlistArgs(d)
	if err != nil {
		return false, nil
	}
	l, err := b.getAllowlist(ctx, req.Storage, tenant, name)
	return l != nil, err
}

func (b *Backend) pathAllowlistRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, name, err := allowlistArgs(d)
	if err != nil {
		return badRequest(err)
	}
	l, err := b.getAllowlist(ctx, req.Storage, tenant, name)
	if err != nil || l == nil {
		return nil, err
	}
	using, err := b.index.NamingAllowlist(ctx, req.Storage, tenant, name, 0)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{
		"tenant": tenant, "name": l.Name, "cidrs": l.CIDRs, "description": l.Description, "key_count": len(using),
	}}, nil
}

func (b *Backend) pathAllowlistWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, name, err := allowlistArgs(d)
	if err != nil {
		return badRequest(err)
	}
	lock := b.tenantLock(tenant)
	lock.Lock()
	defer lock.Unlock()
	old, err := b.getAllowlist(ctx, req.Storage, tenant, name)
	if err != nil {
		return nil, err
	}
	l := &Allowlist{Name: name}
	if old != nil {
		copied := *old
		l = &copied
	}
	if v, ok := d.GetOk("cidrs"); ok {
		if l.CIDRs, err = normalizeCIDRs(v.([]string)); err != nil {
			return badRequest(err)
		}
	}
	if len(l.CIDRs) == 0 {
		return badRequest(fmt.Errorf("cidrs is required: an allow-list holds at least one CIDR block, e.g. cidrs=10.1.0.0/16"))
	}
	if v, ok := d.GetOk("description"); ok {
		l.Description = v.(string)
		if err := validDescription(l.Description); err != nil {
			return badRequest(err)
		}
	}
	sc := allowlistScope(tenant, name)
	return seqAnswer(b.commitScope(ctx, req.Storage, sc, wire.OpAllowlistUpdated, func(ctx context.Context) error {
		return writeThrough(ctx, req.Storage, b.allowlists, sc.storageKey(), sc.storageKey(), l)
	}))
}

func (b *Backend) pathAllowlistDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, name, err := allowlistArgs(d)
	if err != nil {
		return badRequest(err)
	}
	lock := b.tenantLock(tenant)
	lock.Lock()
	defer lock.Unlock()
	using, err := b.index.NamingAllowlist(ctx, req.Storage, tenant, name, 3)
	if err != nil {
		return nil, err
	}
	if len(using) > 0 {
		return logical.ErrorResponse("allow-list %q is named by live keys (%v…): patch them (allowlists=…) or revoke them first", printable(name), using), logical.ErrInvalidRequest
	}
	l, err := b.getAllowlist(ctx, req.Storage, tenant, name)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return logical.ErrorResponse("tenant %q has no allow-list named %q", printable(tenant), printable(name)), logical.ErrInvalidRequest
	}
	return seqAnswer(b.deleteAllowlist(ctx, req.Storage, tenant, name))
}

// deleteAllowlist deletes a tenant's allow-list and publishes it. The caller
// holds the tenant's write lock and has checked that no live key names it.
func (b *Backend) deleteAllowlist(ctx context.Context, s logical.Storage, tenant, name string) (uint64, error) {
	sc := allowlistScope(tenant, name)
	return b.commitScope(ctx, s, sc, wire.OpAllowlistDeleted, func(ctx context.Context) error {
		return deleteThrough(ctx, s, b.allowlists, sc.storageKey(), sc.storageKey())
	})
}

func (b *Backend) pathAllowlistList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return badRequest(err)
	}
	names, err := req.Storage.List(ctx, allowlistKey(tenant, ""))
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(names), nil
}

const pathAllowlistHelpDesc = `
An allow-list is a named set of CIDR blocks of one tenant. Keys name lists with
allowlists=office,vpn (on create or patch): a key's clients must then come from
its allowed_cidrs or from one of the lists it names (a key naming neither may be
used from anywhere), and also from its role's and its tenant's allowed_cidrs.
Writing a list applies at once to every key that names it; a list that live keys
name cannot be deleted.
`
