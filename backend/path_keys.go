package backend

import (
	"context"
	"errors"
	"fmt"
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
		"name":          {Type: framework.TypeString, Required: true, Description: "Name of the key, unique among live keys of the mount (letters, digits, '.', '_', '-'; up to 128)."},
		"role":          {Type: framework.TypeString, Description: "Role the key is issued under (required on create; never changes)."},
		"workspace":     {Type: framework.TypeString, Description: "Workspace the key is pinned to; must match the role's allowed_workspaces. Empty = any workspace the role allows."},
		"description":   {Type: framework.TypeString, Description: "Free text shown in read and list (up to 1024 bytes)."},
		"ttl":           {Type: framework.TypeDurationSecond, Description: "Lifetime of the key (e.g. 720h). 0 = never expires, only where neither role nor mount sets max_ttl. Default: role ttl, mount default_ttl, then max_ttl."},
		"allowed_cidrs": {Type: framework.TypeCommaStringSlice, Description: "CIDR blocks clients of this key must come from, in addition to the role's."},
		"permissions":   {Type: framework.TypeCommaStringSlice, Description: "Permissions of this key, capped by the role's current ones. Default * (all the role grants)."},
		"metadata":      {Type: framework.TypeKVPairs, Description: "Free-form key=value pairs returned to verifiers with a valid key (up to 32)."},
	}
}

func pathKeys(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:        "keys/" + nameSegment("name"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "key"},
			Fields:         keyFields(),
			ExistenceCheck: b.keyExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: b.pathKeyCreate, Summary: "Issue a key; the key is returned once."},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeyUpdate},
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathKeyRead, Summary: "Read a key's record (never the key)."},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.pathKeyDelete, Summary: "Revoke a key at once."},
				logical.PatchOperation:  &framework.PathOperation{Callback: b.pathKeyPatch, Summary: "Change description, metadata or allowed_cidrs."},
			},
			HelpSynopsis:    pathKeysHelpSyn,
			HelpDescription: pathKeysHelpDesc,
		},
		{
			Pattern:      "keys/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationSuffix: "keys"},
			Fields: map[string]*framework.FieldSchema{
				"after":     {Type: framework.TypeString, Query: true, Description: "List names after this one (pagination)."},
				"limit":     {Type: framework.TypeInt, Query: true, Default: defaultListLimit, Description: "Most names to return (1-10000)."},
				"role":      {Type: framework.TypeString, Query: true, Description: "Only keys of this role."},
				"workspace": {Type: framework.TypeString, Query: true, Description: "Only keys pinned to this workspace."},
				"status":    {Type: framework.TypeString, Query: true, Description: "Only keys with this status: active, disabled or expired."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathKeyList},
			},
			HelpSynopsis:    "List live keys by name, with key_id, role, workspace and status.",
			HelpDescription: "Pages with after and limit; filters by role, workspace and status. Served from an in-memory index, so it stays fast with a million keys.",
		},
	}
}

func (b *Backend) keyExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if validName("key", name) != nil {
		return false, nil // the handler explains what is wrong with it
	}
	// The in-memory index answers without a storage round trip: this check runs
	// before every write to keys/<name>, issuance included.
	return b.index.Has(ctx, req.Storage, name)
}

// parseKeyRequest reads a create request. Checks that need the role (it may
// change meanwhile) are made by issue, under the role's lock.
func parseKeyRequest(d *framework.FieldData) (*keyRequest, error) {
	kr := &keyRequest{KeySpec: KeySpec{Name: d.Get("name").(string), Role: d.Get("role").(string)}}
	if err := validName("key", kr.Name); err != nil {
		return nil, err
	}
	if kr.Role == "" {
		return nil, errors.New("role is required: issue keys under a role, e.g. role=developer (list roles with `vault list apikeys/roles`)")
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
	data := b.recordView(out.rec, nil, out.rec.CreatedAt)
	data["key"] = out.key.String()
	data["seq"] = out.seq
	return &logical.Response{Data: data}, nil
}

func (b *Backend) pathKeyUpdate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	return logical.ErrorResponse("a key named %q already exists: keys are immutable once issued; use `vault patch apikeys/keys/%s` for description, metadata or allowed_cidrs, or keys/%s/rotate for a new secret", printable(name), printable(name), printable(name)), logical.ErrInvalidRequest
}

func (b *Backend) pathKeyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validName("key", name); err != nil {
		return badRequest(err)
	}
	n, err := b.getName(ctx, req.Storage, name)
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
	data := b.recordView(rec, u, b.now())
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

func (b *Backend) pathKeyList(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	f := ListFilter{
		After: d.Get("after").(string), Limit: d.Get("limit").(int),
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
	names, entries, err := b.index.Page(ctx, req.Storage, f)
	if err != nil {
		return nil, err
	}
	info := make(map[string]interface{}, len(names))
	for _, name := range names {
		e := entries[name]
		row := map[string]interface{}{
			"key_id": e.KeyID, "role": e.Role, "workspace": e.Workspace,
			"status": e.status(f.Now), "expires_at": formatTime(e.ExpiresAt),
			"created_at": e.CreatedAt.Format(time.RFC3339),
			"use_count":  uint64(0), "last_used_at": "", "last_used_from": "",
		}
		u, err := b.getUsage(ctx, req.Storage, e.KeyID)
		if err != nil {
			return nil, err
		}
		if u != nil {
			row["use_count"], row["last_used_at"], row["last_used_from"] = u.Count, u.LastUsedAt.Format(time.RFC3339), u.LastUsedFrom
		}
		info[name] = row
	}
	return logical.ListResponseWithInfo(names, info), nil
}

func (b *Backend) pathKeyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validName("key", name); err != nil {
		return badRequest(err)
	}
	out, err := b.revokeLiveName(ctx, req.Storage, name)
	if err != nil {
		return failed(err)
	}
	return &logical.Response{Data: map[string]interface{}{
		"name": name, "key_id": out.rec.KeyID, "status": wire.StatusRevoked, "seq": out.seq,
	}}, nil
}

const pathKeysHelpSyn = `Issue, read and revoke API keys.`

const pathKeysHelpDesc = `
Writing keys/<name> with a role issues a key and returns it once, in the "key"
field; Vault never stores it. Reading returns the record: key_id, role,
workspace, permissions, status, timestamps and usage, never the key. Deleting
revokes the key at once and frees the name; verifiers answer REVOKED for its
key_id until tombstone_retention passes.
`
