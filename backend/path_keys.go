package backend

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

const (
	defaultListLimit = 1000
	maxListLimit     = 10000
)

func keyFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"tenant":        tenantField(),
		"name":          {Type: framework.TypeString, Required: true, Description: "Name of the key, unique among live keys of the tenant (letters, digits, '.', '_', '-'; up to 128)."},
		"role":          {Type: framework.TypeString, Description: "Role the key is issued under (required on create; never changes)."},
		"workspace":     {Type: framework.TypeString, Description: "Workspace the key is pinned to; must match the role's allowed_workspaces. Empty = any workspace the role allows."},
		"description":   {Type: framework.TypeString, Description: "Free text shown in read and list (up to 1024 bytes)."},
		"ttl":           {Type: framework.TypeDurationSecond, Description: "Lifetime of the key (e.g. 720h). 0 = never expires, only where neither role nor mount sets max_ttl. Default: role ttl, mount default_ttl, then max_ttl."},
		"allowed_cidrs": {Type: framework.TypeCommaStringSlice, Description: "CIDR blocks clients of this key may come from (with those of its allowlists); the role's and tenant's allowed_cidrs apply as well."},
		"allowlists":    {Type: framework.TypeCommaStringSlice, Description: "Names of the tenant's allow-lists (tenants/<tenant>/allowlists) whose CIDRs clients of this key may come from; a change of a list applies at once."},
		"permissions":   {Type: framework.TypeCommaStringSlice, Description: "Permissions of this key, capped by the role's current ones. Default * (all the role grants)."},
		"metadata":      {Type: framework.TypeKVPairs, Description: "Free-form key=value pairs returned to verifiers with a valid key (up to 32)."},
	}
}

// listFields are the paging and filter fields of key lists.
func listFields() map[string]*framework.FieldSchema {
	f := pageFields("row")
	f["role"] = &framework.FieldSchema{Type: framework.TypeString, Query: true, Description: "Only keys of this role."}
	f["workspace"] = &framework.FieldSchema{Type: framework.TypeString, Query: true, Description: "Only keys pinned to this workspace."}
	f["status"] = &framework.FieldSchema{Type: framework.TypeString, Query: true, Description: "Only keys with this status: active, disabled or expired."}
	return f
}

func pathKeys(b *Backend) []*framework.Path {
	tenantList := listFields()
	tenantList["tenant"] = tenantField()
	mountList := listFields()
	mountList["tenant"] = &framework.FieldSchema{Type: framework.TypeString, Query: true, Description: "Only keys of this tenant."}
	return []*framework.Path{
		{
			Pattern:        tenantPrefix() + "keys/" + nameSegment("name"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "key"},
			Fields:         keyFields(),
			ExistenceCheck: b.keyExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathKeyCreate, Summary: "Issue a key; the key is returned once."},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeyUpdate},
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathKeyRead, Summary: "Read a key's record (never the key)."},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathKeyDelete, Summary: "Revoke a key at once."},
				logical.PatchOperation:  &framework.PathOperation{Callback: b.pathKeyPatch, Summary: "Change description, metadata, allowed_cidrs or allowlists."},
			},
			HelpSynopsis:    pathKeysHelpSyn,
			HelpDescription: pathKeysHelpDesc,
		},
		{
			Pattern:      tenantPrefix() + "keys/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "tenant-keys"},
			Fields:       tenantList,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathTenantKeyList},
			},
			HelpSynopsis:    "List the tenant's live keys by name, with every field of read (-detailed), and next.",
			HelpDescription: "Pages with after (a name) and limit and answers next; filters by role, workspace and status. Served from an in-memory index, so it stays fast with a million keys. Paged or filtered from the CLI: vault read apikeys/tenants/<tenant>/keys list=true limit=100 status=active.",
		},
		{
			Pattern:      "keys/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "keys"},
			Fields:       mountList,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathMountKeyList},
			},
			HelpSynopsis:    "List every live key of the mount as <tenant>/<name>, for operators.",
			HelpDescription: "Pages with after (a <tenant>/<name> row) and limit and answers next; filters by tenant, role, workspace and status. Paged or filtered from the CLI: vault read apikeys/keys list=true tenant=acme limit=100 after=acme/ci.",
		},
	}
}

// keyRef reads and checks the tenant and name path segments of a key path.
func keyRef(d *framework.FieldData) (string, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return "", err
	}
	name := d.Get("name").(string)
	if err := validName("key", name); err != nil {
		return "", err
	}
	return refOf(tenant, name), nil
}

func (b *Backend) keyExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	ref, err := keyRef(d)
	if err != nil {
		return false, nil // the handler explains what is wrong with it
	}
	// The in-memory index answers without a storage round trip: this check runs
	// before every write to keys/<name>, issuance included.
	return b.index.Has(ctx, req.Storage, ref)
}

// parseKeyRequest reads a create request. Checks that need the role (it may
// change meanwhile) are made by issue, under the role's lock.
func parseKeyRequest(d *framework.FieldData) (*keyRequest, error) {
	kr := &keyRequest{KeySpec: KeySpec{Tenant: d.Get("tenant").(string), Name: d.Get("name").(string), Role: d.Get("role").(string)}}
	if err := validName("tenant", kr.Tenant); err != nil {
		return nil, err
	}
	if err := validName("key", kr.Name); err != nil {
		return nil, err
	}
	if kr.Role == "" {
		return nil, errors.New("role is required: issue keys under a role, e.g. role=developer (list roles with `vault list apikeys/roles`)")
	}
	if v, ok := d.GetOk("allowlists"); ok {
		kr.Allowlists = v.([]string)
		if err := validAllowlistNames(kr.Allowlists); err != nil {
			return nil, err
		}
	}
	if ws, ok := d.GetOk("workspace"); ok && ws.(string) != "" {
		kr.Workspace = ws.(string)
		if err := validWorkspace(kr.Workspace); err != nil {
			return nil, err
		}
	}
	kr.ttl, kr.ttlGiven = ttlField(d)
	var err error
	if v, ok := d.GetOk("allowed_cidrs"); ok {
		if kr.AllowedCIDRs, err = normalizeCIDRs(v.([]string)); err != nil {
			return nil, err
		}
	}
	kr.Permissions = []string{"*"}
	if v, ok := d.GetOk("permissions"); ok {
		kr.Permissions = v.([]string)
		if err := validPermissions(kr.Permissions); err != nil {
			return nil, err
		}
	}
	kr.Description = d.Get("description").(string)
	if err := validDescription(kr.Description); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("metadata"); ok {
		kr.Metadata = v.(map[string]string)
		if err := validMetadata(kr.Metadata); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// ttlField reads the optional ttl field of create and rotate.
func ttlField(d *framework.FieldData) (time.Duration, bool) {
	raw, given := d.GetOk("ttl")
	if !given {
		return 0, false
	}
	return time.Duration(raw.(int)) * time.Second, true
}

func (b *Backend) pathKeyCreate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	kr, err := parseKeyRequest(d)
	if err != nil {
		return badRequest(err)
	}
	out, err := b.issue(ctx, req, kr)
	if err != nil {
		return failed(err)
	}
	data := recordView(out.rec, nil, out.rec.CreatedAt)
	data["key"] = out.key.String()
	data["seq"] = out.seq
	return &logical.Response{Data: data}, nil
}

func (b *Backend) pathKeyUpdate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ref, err := keyRef(d)
	if err != nil {
		return badRequest(err)
	}
	tenant, name := splitRef(ref)
	return logical.ErrorResponse("a key named %q already exists in tenant %q: keys are immutable once issued; use `vault patch apikeys/tenants/%s/keys/%s` for description, metadata, allowed_cidrs or allowlists, or tenants/%s/keys/%s/rotate for a new secret", name, tenant, tenant, name, tenant, name), logical.ErrInvalidRequest
}

func (b *Backend) pathKeyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ref, err := keyRef(d)
	if err != nil {
		return badRequest(err)
	}
	n, err := b.getName(ctx, req.Storage, ref)
	if err != nil || n == nil {
		return nil, err
	}
	rec, err := b.getRecord(ctx, req.Storage, n.KeyID)
	if err != nil || rec == nil {
		return nil, err
	}
	u, err := b.getUsage(ctx, req.Storage, rec.KeyID)
	if err != nil {
		return nil, err
	}
	data := recordView(rec, u, b.now())
	previous := []map[string]interface{}{}
	for _, id := range n.Previous {
		old, err := b.getRecord(ctx, req.Storage, id)
		if err != nil {
			return nil, err
		}
		if old != nil {
			previous = append(previous, map[string]interface{}{
				"key_id": old.KeyID, "status": old.status(b.now()),
				"grace_until": formatTime(old.GraceUntil), "expires_at": formatTime(old.ExpiresAt),
			})
		}
	}
	data["previous_keys"] = previous
	return &logical.Response{Data: data}, nil
}

func (b *Backend) pathTenantKeyList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant, err := tenantArg(d)
	if err != nil {
		return badRequest(err)
	}
	after := d.Get("after").(string)
	if after != "" {
		after = refOf(tenant, after)
	}
	return b.listKeys(ctx, req, d, tenant, after, func(ref string) string { _, name := splitRef(ref); return name })
}

func (b *Backend) pathMountKeyList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant := d.Get("tenant").(string)
	if tenant != "" {
		if err := validName("tenant", tenant); err != nil {
			return badRequest(err)
		}
	}
	return b.listKeys(ctx, req, d, tenant, d.Get("after").(string), func(ref string) string { return ref })
}

// listKeys answers a page of keys (within tenant when set) after the ref
// after: rows named by row(ref), each with the fields of read, and next.
func (b *Backend) listKeys(ctx context.Context, req *logical.Request, d *framework.FieldData, tenant, after string, row func(string) string) (*logical.Response, error) {
	f := ListFilter{
		After: after, Limit: d.Get("limit").(int), Tenant: tenant,
		Role: d.Get("role").(string), Workspace: d.Get("workspace").(string),
		Status: d.Get("status").(string), Now: b.now(),
	}
	if f.Limit < 1 || f.Limit > maxListLimit {
		return badRequest(fmt.Errorf("limit must be between 1 and %d", maxListLimit))
	}
	switch f.Status {
	case "", wire.StatusActive, wire.StatusDisabled, wire.StatusExpired:
	default:
		return badRequest(fmt.Errorf("status filter %q is invalid: use active, disabled or expired", printable(f.Status)))
	}
	refs, entries, next, err := b.index.Page(ctx, req.Storage, f)
	if err != nil {
		return nil, err
	}
	views, err := b.rowViews(ctx, req.Storage, refs, entries, f.Now)
	if err != nil {
		return nil, err
	}
	rows := make([]string, 0, len(refs))
	info := make(map[string]interface{}, len(refs))
	for i, ref := range refs {
		if views[i] == nil {
			continue // revoked and purged since the page was taken
		}
		rows = append(rows, row(ref))
		info[row(ref)] = views[i]
	}
	resp := logical.ListResponseWithInfo(rows, info)
	if next != "" {
		next = row(next)
	}
	resp.Data["next"] = next
	return resp, nil
}

func (b *Backend) pathKeyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ref, err := keyRef(d)
	if err != nil {
		return badRequest(err)
	}
	out, err := b.revokeLiveName(ctx, req.Storage, ref)
	if err != nil {
		return failed(err)
	}
	return b.revokedResponse(ctx, req.Storage, out)
}

// rowReaders bounds the storage reads one list page has in flight.
const rowReaders = 8

// rowViews reads each listed key's record and usage (two storage reads a
// row when not cached), rowReaders rows at a time: a page's latency is then
// about limit/rowReaders round trips, not 2×limit. A nil view is a key
// purged since the page was taken.
func (b *Backend) rowViews(ctx context.Context, s logical.Storage, refs []string, entries map[string]NameEntry, now time.Time) ([]map[string]interface{}, error) {
	views := make([]map[string]interface{}, len(refs))
	errs := make([]error, len(refs))
	sem := make(chan struct{}, rowReaders)
	var wg sync.WaitGroup
	for i, ref := range refs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rec, err := b.getRecord(ctx, s, entries[ref].KeyID)
			if err != nil || rec == nil {
				errs[i] = err
				return
			}
			u, err := b.getUsage(ctx, s, rec.KeyID)
			if err != nil {
				errs[i] = err
				return
			}
			views[i] = recordView(rec, u, now)
		}()
	}
	wg.Wait()
	return views, errors.Join(errs...)
}

const pathKeysHelpSyn = `Issue, read and revoke API keys.`

const pathKeysHelpDesc = `
Writing tenants/<tenant>/keys/<name> with a role issues a key and returns it once, in the "key"
field; Vault never stores it. Reading returns the record: key_id, role,
workspace, permissions, status, timestamps and usage, never the key. Deleting
revokes the key at once and frees the name; verifiers answer REVOKED for its
key_id until tombstone_retention passes.
`
