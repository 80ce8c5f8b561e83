package backend

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
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

// badRequest renders an operator mistake as a clean 400.
func badRequest(err error) (*logical.Response, error) {
	return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
}

// keyRequest is a validated create request.
type keyRequest struct {
	name, workspace, description string
	role                         *Role
	ttl                          time.Duration
	cidrs, permissions           []string
	metadata                     map[string]string
}

func (b *Backend) parseKeyRequest(ctx context.Context, s logical.Storage, d *framework.FieldData, cfg *Config) (*keyRequest, error) {
	kr := &keyRequest{name: d.Get("name").(string)}
	if err := validName("key", kr.name); err != nil {
		return nil, err
	}
	roleName := d.Get("role").(string)
	if roleName == "" {
		return nil, errors.New("role is required: issue keys under a role, e.g. role=developer (list roles with `vault list apikeys/roles`)")
	}
	role, err := b.getRole(ctx, s, roleName)
	if err != nil {
		return nil, err
	}
	if role == nil {
		return nil, fmt.Errorf("unknown role %q: create it first with `vault write apikeys/roles/%s permissions=…`", printable(roleName), printable(roleName))
	}
	kr.role = role
	if ws, ok := d.GetOk("workspace"); ok && ws.(string) != "" {
		kr.workspace = ws.(string)
		if err := validWorkspace(kr.workspace); err != nil {
			return nil, err
		}
		if !wire.WorkspaceAllowed(role.AllowedWorkspaces, kr.workspace) {
			return nil, fmt.Errorf("workspace %q is not allowed by role %q (allowed: %v)", kr.workspace, role.Name, role.AllowedWorkspaces)
		}
	}
	if kr.ttl, err = resolveTTL(d, role, cfg); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("allowed_cidrs"); ok {
		if kr.cidrs, err = normalizeCIDRs(v.([]string)); err != nil {
			return nil, err
		}
	}
	kr.permissions = []string{"*"}
	if v, ok := d.GetOk("permissions"); ok {
		kr.permissions = v.([]string)
		if err := validPermissions(kr.permissions); err != nil {
			return nil, err
		}
	}
	kr.description = d.Get("description").(string)
	if err := validDescription(kr.description); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("metadata"); ok {
		kr.metadata = v.(map[string]string)
		if err := validMetadata(kr.metadata); err != nil {
			return nil, err
		}
	}
	return kr, nil
}

// resolveTTL picks a key's lifetime: the request's, else the role's, else the
// mount's default, else the tightest max; 0 means never expires.
func resolveTTL(d *framework.FieldData, role *Role, cfg *Config) (time.Duration, error) {
	limit := role.MaxTTL
	if cfg.MaxTTL > 0 && (limit == 0 || cfg.MaxTTL < limit) {
		limit = cfg.MaxTTL
	}
	raw, given := d.GetOk("ttl")
	if !given {
		for _, ttl := range []time.Duration{role.TTL, cfg.DefaultTTL, limit} {
			if ttl > 0 {
				if limit > 0 && ttl > limit {
					return limit, nil
				}
				return ttl, nil
			}
		}
		return 0, nil
	}
	ttl := time.Duration(raw.(int)) * time.Second
	switch {
	case ttl < 0:
		return 0, fmt.Errorf("ttl must not be negative")
	case ttl == 0 && limit > 0:
		return 0, fmt.Errorf("ttl=0 (never expires) is not allowed: role %q or the mount sets max_ttl %s; give a ttl up to that", role.Name, limit)
	case limit > 0 && ttl > limit:
		return 0, fmt.Errorf("ttl %s exceeds the max_ttl %s of role %q (or the mount); ask for less", ttl, limit, role.Name)
	}
	return ttl, nil
}

func (b *Backend) pathKeyCreate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	sealer, cfg, err := b.sealerFor(ctx, req.Storage)
	if err != nil {
		return badRequest(err)
	}
	kr, err := b.parseKeyRequest(ctx, req.Storage, d, cfg)
	if err != nil {
		return badRequest(err)
	}
	lock := b.nameLock(kr.name)
	lock.Lock()
	defer lock.Unlock()

	why, err := b.index.Reserve(ctx, req.Storage, kr.name, kr.role.Name, cfg.MaxKeys, kr.role.MaxKeys)
	if err != nil {
		return nil, err
	}
	if why != "" {
		return logical.ErrorResponse(why), logical.ErrInvalidRequest
	}
	var committed *NameEntry
	defer func() { b.index.Commit(kr.name, committed) }()

	tok, err := token.Generate(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	rec, err := b.newRecord(ctx, req, sealer, cfg, tok, kr)
	if err != nil {
		return nil, err
	}
	entry := nameEntryOf(rec, nil)
	if err := b.putIndexes(ctx, req.Storage, rec); err != nil {
		return nil, err
	}
	if err := b.putNamed(ctx, req.Storage, rec, entry); err != nil {
		return nil, err
	}
	committed = &entry
	if _, err := b.feed.Append(ctx, req.Storage, rec.KeyID, rec.Role, wire.OpCreated, rec.CreatedAt); err != nil {
		return nil, err
	}
	b.sendEvent(ctx, "key-created", "key_id", rec.KeyID, "name", rec.Name, "role", rec.Role)

	data := b.recordView(rec, nil, rec.CreatedAt)
	data["key"] = tok.String()
	return &logical.Response{Data: data}, nil
}

// newRecord builds and seals the record of a freshly generated token.
func (b *Backend) newRecord(ctx context.Context, req *logical.Request, sealer Sealer, cfg *Config, tok token.Token, kr *keyRequest) (*Record, error) {
	now := b.now()
	digest := tok.Digest()
	sealed, err := sealer.Seal(ctx, envelope.AAD(cfg.MountID, tok.KeyID), digest[:])
	clear(digest[:])
	if err != nil {
		return nil, fmt.Errorf("seal key %s: %w", tok.KeyID, err)
	}
	rec := &Record{
		KeyID: tok.KeyID, Name: kr.name, Role: kr.role.Name, Workspace: kr.workspace,
		Description: kr.description, Permissions: kr.permissions, AllowedCIDRs: kr.cidrs,
		Metadata: kr.metadata, Status: wire.StatusActive, CreatedAt: now,
		CreatedBy: b.creator(req), Sealed: sealed,
	}
	if kr.ttl > 0 {
		exp := now.Add(kr.ttl)
		rec.ExpiresAt = &exp
	}
	return rec, nil
}

func (b *Backend) creator(req *logical.Request) Creator {
	c := Creator{EntityID: req.EntityID, DisplayName: req.DisplayName}
	if req.EntityID != "" && b.System() != nil {
		if ent, err := b.System().EntityInfo(req.EntityID); err == nil && ent != nil && ent.Name != "" {
			c.DisplayName = ent.Name
		}
	}
	return c
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

// recordView is what read, list and create show: never the key or its digest.
func (b *Backend) recordView(rec *Record, u *wire.Usage, now time.Time) map[string]interface{} {
	data := map[string]interface{}{
		"name":           rec.Name,
		"key_id":         rec.KeyID,
		"role":           rec.Role,
		"workspace":      rec.Workspace,
		"permissions":    rec.Permissions,
		"allowed_cidrs":  nonNil(rec.AllowedCIDRs),
		"description":    rec.Description,
		"status":         rec.status(now),
		"created_at":     rec.CreatedAt.Format(time.RFC3339),
		"created_by":     map[string]interface{}{"entity_id": rec.CreatedBy.EntityID, "display_name": rec.CreatedBy.DisplayName},
		"expires_at":     formatTime(rec.ExpiresAt),
		"metadata":       nonNilMap(rec.Metadata),
		"use_count":      uint64(0),
		"last_used_at":   "",
		"last_used_from": "",
	}
	if u != nil {
		data["use_count"] = u.Count
		data["last_used_at"] = u.LastUsedAt.Format(time.RFC3339)
		data["last_used_from"] = u.LastUsedFrom
	}
	return data
}

func formatTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
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
	lock := b.nameLock(name)
	lock.Lock()
	defer lock.Unlock()
	n, err := b.getName(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return badRequest(fmt.Errorf("no live key named %q: nothing was revoked (list keys with `vault list apikeys/keys`)", name))
	}
	return nil, b.revokeName(ctx, req.Storage, name, n)
}

// revokeName revokes the name's key (and any key still in rotation grace) and
// frees the name. The caller holds the name lock.
func (b *Backend) revokeName(ctx context.Context, s logical.Storage, name string, n *NameEntry) error {
	for _, id := range append([]string{n.KeyID}, n.Previous...) {
		rec, err := b.getRecord(ctx, s, id)
		if err != nil {
			return err
		}
		if rec != nil {
			if err := b.revokeRecord(ctx, s, rec); err != nil {
				return err
			}
		}
	}
	if err := s.Delete(ctx, storageNamePrefix+name); err != nil {
		return fmt.Errorf("free name %s: %w", name, err)
	}
	b.index.Remove(name)
	return nil
}

// revokeRecord turns a record into its tombstone, then publishes the change:
// the record is written first so a verifier re-reading after the eviction
// sees the revocation.
func (b *Backend) revokeRecord(ctx context.Context, s logical.Storage, rec *Record) error {
	if rec.Status == wire.StatusRevoked {
		return nil
	}
	now := b.now()
	rec.Status, rec.RevokedAt = wire.StatusRevoked, &now
	if err := b.putRecord(ctx, s, rec); err != nil {
		return err
	}
	if err := putJSON(ctx, s, tombKey(now, rec.KeyID), map[string]string{"key_id": rec.KeyID}); err != nil {
		return err
	}
	if rec.CreatedBy.EntityID != "" {
		if err := s.Delete(ctx, ownerKey(rec.CreatedBy.EntityID, rec.KeyID)); err != nil {
			return fmt.Errorf("drop owner index of %s: %w", rec.KeyID, err)
		}
	}
	if _, err := b.feed.Append(ctx, s, rec.KeyID, rec.Role, wire.OpRevoked, now); err != nil {
		return err
	}
	b.sendEvent(ctx, "key-revoked", "key_id", rec.KeyID, "name", rec.Name, "role", rec.Role)
	return nil
}

// revokeRoleKeys revokes every live key of a role (role delete with revoke_keys).
func (b *Backend) revokeRoleKeys(ctx context.Context, req *logical.Request, role string) error {
	for {
		names, entries, err := b.index.Page(ctx, req.Storage, ListFilter{Role: role, Limit: 500})
		if err != nil || len(names) == 0 {
			return err
		}
		for _, name := range names {
			n := entries[name]
			lock := b.nameLock(name)
			lock.Lock()
			err := b.revokeName(ctx, req.Storage, name, &n)
			lock.Unlock()
			if err != nil {
				return err
			}
		}
	}
}

func (b *Backend) sendEvent(ctx context.Context, kind string, kv ...string) {
	if err := logical.SendEvent(ctx, b, "apikeys/"+kind, kv...); err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.logger.Debug("send event", "type", kind, "error", err)
	}
}

const pathKeysHelpSyn = `Issue, read and revoke API keys.`

const pathKeysHelpDesc = `
Writing keys/<name> with a role issues a key and returns it once, in the "key"
field; Vault never stores it. Reading returns the record: key_id, role,
workspace, permissions, status, timestamps and usage, never the key. Deleting
revokes the key at once and frees the name; verifiers answer REVOKED for its
key_id until tombstone_retention passes.
`
