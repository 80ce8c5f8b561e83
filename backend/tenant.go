package backend

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Tenants live inside the mount (DESIGN §1): a tenant is a path segment of its
// keys, springs into being with its first key and costs nothing but its
// records. An operator may give it settings (tenants/<tenant>): a description,
// its own key quota and a tenant-wide address allow-list.

const storageTenantPrefix = "tenant/"

// Tenant is a tenant's settings, stored at tenant/<tenant> once an operator
// writes them. A tenant without them has the mount's defaults.
type Tenant struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// MaxKeys overrides config max_keys_per_tenant when set (0 = unlimited).
	MaxKeys      *int     `json:"max_keys,omitempty"`
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
}

// maxKeys is the tenant's quota under cfg (0 = unlimited).
func (t *Tenant) maxKeys(cfg *Config) int {
	if t != nil && t.MaxKeys != nil {
		return *t.MaxKeys
	}
	return cfg.MaxKeysPerTenant
}

func (t *Tenant) cidrs() []string {
	if t == nil {
		return nil
	}
	return t.AllowedCIDRs
}

// tenantLock orders writers of a tenant's settings and allow-lists (held
// exclusively) against issuance and patches in the tenant (held shared), so a
// key never names an allow-list that is being deleted.
func (b *Backend) tenantLock(tenant string) *locksutil.LockEntry {
	return locksutil.LockForKey(b.tenantLocks, tenant)
}

// getTenant reads a tenant's settings (nil when it has none).
func (b *Backend) getTenant(ctx context.Context, s logical.Storage, tenant string) (*Tenant, error) {
	return readThrough(ctx, s, b.tenants, tenant, storageTenantPrefix+tenant)
}

func tenantField() *framework.FieldSchema {
	return &framework.FieldSchema{Type: framework.TypeString, Required: true,
		Description: "Tenant (customer account) the key belongs to: letters, digits, '.', '_', '-'; up to 128."}
}

// tenantPrefix is the path prefix of everything a tenant admin may reach. It
// matches any segment, so the handler can say what is wrong with a bad name.
func tenantPrefix() string { return "tenants/(?P<tenant>[^/]+)/" }

func pathTenants(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "tenants/" + nameSegment("tenant"),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "tenant"},
			Fields: map[string]*framework.FieldSchema{
				"tenant":        tenantField(),
				"description":   {Type: framework.TypeString, Description: "Free text shown in read (up to 1024 bytes)."},
				"max_keys":      {Type: framework.TypeInt, Description: "Most live keys of this tenant, overriding config max_keys_per_tenant (0 = unlimited)."},
				"allowed_cidrs": {Type: framework.TypeCommaStringSlice, Description: "Tenant-wide allow-list: clients of every key of the tenant must come from these CIDR blocks (empty = anywhere). Applies at once."},
				"revoke_keys":   {Type: framework.TypeBool, Description: "On delete: also revoke every live key of the tenant. Without it, deleting a tenant that has keys fails."},
			},
			ExistenceCheck: b.tenantExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathTenantRead, Summary: "Read a tenant's settings and key count."},
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathTenantWrite, Summary: "Set a tenant's description, quota or allow-list."},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathTenantWrite},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathTenantDelete, Summary: "Delete a tenant's settings and allow-lists (and with revoke_keys, its keys)."},
			},
			HelpSynopsis:    "A tenant's settings: description, max_keys (its quota) and allowed_cidrs (a tenant-wide allow-list).",
			HelpDescription: pathTenantHelpDesc,
		},
		{
			Pattern:      "tenants/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "tenants"},
			Fields:       pageFields("tenant"),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathTenantList},
			},
			HelpSynopsis:    "List tenants: those with live keys and those with settings, with key counts.",
			HelpDescription: "Pages with after and limit and answers next (empty on the last page).",
		},
	}
}

// pageFields are the after and limit fields of a paged list of what.
func pageFields(what string) map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"after": {Type: framework.TypeString, Query: true, Description: fmt.Sprintf("List after this %s (the previous page's next).", what)},
		"limit": {Type: framework.TypeInt, Query: true, Default: defaultListLimit, Description: fmt.Sprintf("Most rows to return (1-%d).", maxListLimit)},
	}
}

// tenantArg reads and checks the tenant path segment.
func tenantArg(d *framework.FieldData) (string, error) {
	tenant := d.Get("tenant").(string)
	return tenant, validName("tenant", tenant)
}

func (b *Backend) tenantExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return false, nil
	}
	t, err := b.getTenant(ctx, req.Storage, tenant)
	return t != nil, err
}

func (b *Backend) pathTenantRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return badRequest(err)
	}
	t, err := b.getTenant(ctx, req.Storage, tenant)
	if err != nil {
		return nil, err
	}
	count, err := b.index.TenantCount(ctx, req.Storage, tenant)
	if err != nil {
		return nil, err
	}
	if t == nil && count == 0 {
		return nil, nil
	}
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = defaultConfig()
	}
	desc := ""
	if t != nil {
		desc = t.Description
	}
	return &logical.Response{Data: map[string]interface{}{
		"tenant":           tenant,
		"description":      desc,
		"max_keys":         t.maxKeys(cfg),
		"max_keys_default": t == nil || t.MaxKeys == nil,
		"allowed_cidrs":    nonNil(t.cidrs()),
		"key_count":        count,
	}}, nil
}

func (b *Backend) pathTenantWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return badRequest(err)
	}
	lock := b.tenantLock(tenant)
	lock.Lock()
	defer lock.Unlock()
	old, err := b.getTenant(ctx, req.Storage, tenant)
	if err != nil {
		return nil, err
	}
	t := &Tenant{Name: tenant}
	if old != nil {
		copied := *old
		t = &copied
	}
	given := false // a write must set something
	if v, ok := d.GetOk("description"); ok {
		given = true
		t.Description = v.(string)
		if err := validDescription(t.Description); err != nil {
			return badRequest(err)
		}
	}
	if v, ok := d.GetOk("max_keys"); ok {
		given = true
		n := v.(int)
		if n < 0 {
			return badRequest(fmt.Errorf("max_keys must be 0 (unlimited) or positive"))
		}
		t.MaxKeys = &n
	}
	if v, ok := d.GetOk("allowed_cidrs"); ok {
		given = true
		if t.AllowedCIDRs, err = normalizeCIDRs(v.([]string)); err != nil {
			return badRequest(err)
		}
	}
	if !given {
		return badRequest(fmt.Errorf("nothing to set: give description, max_keys or allowed_cidrs"))
	}
	sc := tenantScope(tenant)
	return seqAnswer(b.commitScope(ctx, req.Storage, sc, wire.OpTenantUpdated, func(ctx context.Context) error {
		return writeThrough(ctx, req.Storage, b.tenants, tenant, sc.storageKey(), t)
	}))
}

func (b *Backend) pathTenantDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return badRequest(err)
	}
	// Exclusive: no key is issued in the tenant while it is counted and removed.
	lock := b.tenantLock(tenant)
	lock.Lock()
	defer lock.Unlock()
	count, err := b.index.TenantCount(ctx, req.Storage, tenant)
	if err != nil {
		return nil, err
	}
	if resp, err := b.refuseOrRevokeKeys(ctx, req.Storage, d, fmt.Sprintf("tenant %q", tenant), count, ListFilter{Tenant: tenant}); resp != nil || err != nil {
		return resp, err
	}
	lists, err := req.Storage.List(ctx, allowlistKey(tenant, ""))
	if err != nil {
		return nil, err
	}
	for _, name := range lists {
		if _, err := b.deleteAllowlist(ctx, req.Storage, tenant, name); err != nil {
			return nil, err
		}
	}
	sc := tenantScope(tenant)
	return seqAnswer(b.commitScope(ctx, req.Storage, sc, wire.OpTenantDeleted, func(ctx context.Context) error {
		return deleteThrough(ctx, req.Storage, b.tenants, tenant, sc.storageKey())
	}))
}

// pathTenantList merges tenants with live keys (the index) and tenants with
// settings (storage), in order.
func (b *Backend) pathTenantList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	after, limit, err := pageArgs(d)
	if err != nil {
		return badRequest(err)
	}
	counted, err := b.index.Tenants(ctx, req.Storage, after, limit+1)
	if err != nil {
		return nil, err
	}
	configured, err := req.Storage.List(ctx, storageTenantPrefix)
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(counted))
	names := make([]string, 0, len(counted)+len(configured))
	for _, c := range counted {
		counts[c.tenant] = c.keys
		names = append(names, c.tenant)
	}
	for _, t := range configured {
		if t > after {
			if _, ok := counts[t]; !ok {
				names = append(names, t)
			}
		}
	}
	sort.Strings(names)
	// A configured tenant may sort after the index's last one: only names up
	// to the index's horizon are complete when it returned a full batch.
	if len(counted) == limit+1 {
		horizon := counted[limit].tenant
		names = slices.DeleteFunc(names, func(n string) bool { return n > horizon })
	}
	next := ""
	if len(names) > limit {
		names, next = names[:limit], names[limit-1]
	}
	info := make(map[string]interface{}, len(names))
	for _, n := range names {
		info[n] = map[string]interface{}{"key_count": counts[n]}
	}
	resp := logical.ListResponseWithInfo(names, info)
	resp.Data["next"] = next
	return resp, nil
}

const pathTenantHelpDesc = `
A tenant is a customer account of the platform: its keys live under
tenants/<tenant>/ and its admins are confined there by the templated policy
tenant-admin. It needs no setup: it exists once it has a key. Operators may set
description, max_keys (the tenant's quota; default config max_keys_per_tenant)
and allowed_cidrs (every key of the tenant is then refused outside them, at once:
verifiers are told through the change feed). Read adds key_count. Delete is
refused while the tenant has live keys unless revoke_keys=true, and removes the
tenant's allow-lists too.
`
