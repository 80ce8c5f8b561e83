package backend

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func pathLookup(b *Backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern:      "lookup/" + framework.GenericNameRegex("key_id"),
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "lookup"},
			Fields: map[string]*framework.FieldSchema{
				"key_id": {Type: framework.TypeString, Required: true, Description: "key_id to look up."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathLookupRead},
			},
			HelpSynopsis:    pathLookupHelpSyn,
			HelpDescription: pathLookupHelpDesc,
		},
		{
			Pattern:      "lookup/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "lookup", OperationSuffix: "batch"},
			Fields: map[string]*framework.FieldSchema{
				"key_ids": {Type: framework.TypeCommaStringSlice, Required: true, Query: true, Description: fmt.Sprintf("Up to %d key_ids to look up in one request (comma-separated in the query of a read).", wire.MaxBatch)},
			},
			// Read (key_ids in the query) is what verifiers send: Vault asks an
			// external plugin's existence check before every write, so a write
			// costs a second round trip to the plugin that a read does not.
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   &framework.PathOperation{Callback: b.pathLookupBatch},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathLookupBatch},
			},
			HelpSynopsis:    "Look up several key_ids in one request (for verifiers batching misses).",
			HelpDescription: pathLookupHelpDesc,
		},
	}
}

func (b *Backend) pathLookupRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	keyID := d.Get("key_id").(string)
	if !token.ValidKeyID(keyID) {
		return badRequest(keyIDError("key_id", keyID))
	}
	seq, err := b.feed.Head(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	e, err := b.entryFor(ctx, req.Storage, keyID, seq)
	if err != nil {
		return nil, err
	}
	if e.Status == wire.StatusNotFound {
		return nil, nil
	}
	return &logical.Response{Data: responseData(e)}, nil
}

func (b *Backend) pathLookupBatch(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ids := d.Get("key_ids").([]string)
	if len(ids) == 0 || len(ids) > wire.MaxBatch {
		return badRequest(fmt.Errorf("key_ids must list 1 to %d key_ids", wire.MaxBatch))
	}
	for i, id := range ids {
		if !token.ValidKeyID(id) {
			return badRequest(keyIDError(fmt.Sprintf("key_ids[%d]", i), id))
		}
	}
	ctx = failpointScope(ctx, "lookup")
	// The head is read before any record: every change up to it is reflected.
	seq, err := b.feed.Head(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	out := wire.Batch{Seq: seq, Entries: make([]wire.Entry, 0, len(ids))}
	for _, id := range ids {
		e, err := b.entryFor(ctx, req.Storage, id, seq)
		if err != nil {
			return nil, err
		}
		out.Entries = append(out.Entries, e)
	}
	return &logical.Response{Data: responseData(out)}, nil
}

// entryFor builds the verifier's view of one key_id.
func (b *Backend) entryFor(ctx context.Context, s logical.Storage, keyID string, seq uint64) (wire.Entry, error) {
	rec, err := b.getRecord(ctx, s, keyID)
	if err != nil {
		return wire.Entry{}, err
	}
	if rec == nil {
		return wire.Entry{KeyID: keyID, Status: wire.StatusNotFound, Seq: seq}, nil
	}
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return wire.Entry{}, err
	}
	e := wire.Entry{
		KeyID: keyID, Status: rec.status(b.now()), Name: rec.Name, Tenant: rec.Tenant, Role: rec.Role,
		Workspace: rec.Workspace, ExpiresAt: rec.ExpiresAt, CreatorRole: rec.CreatorRole,
		Seq: seq, Sealed: &rec.Sealed,
	}
	if cfg != nil {
		e.MountID = cfg.MountID
	}
	if e.Status != wire.StatusActive && e.Status != wire.StatusDisabled {
		return e, nil
	}
	role, err := b.getRole(ctx, s, rec.Role)
	if err != nil {
		return wire.Entry{}, err
	}
	if role == nil {
		// The role is gone (deleted with its keys revoked, or by hand): nothing is granted.
		e.Permissions = []string{}
		return e, nil
	}
	if e.Permissions, err = b.capPermissions(ctx, s, wire.Intersect(rec.Permissions, role.Permissions), rec.CreatorRole); err != nil {
		return wire.Entry{}, err
	}
	e.AllowedWorkspaces = role.AllowedWorkspaces
	e.RoleAllowedCIDRs = role.AllowedCIDRs
	if e.AllowedCIDRs, err = b.keyCIDRs(ctx, s, rec); err != nil {
		return wire.Entry{}, err
	}
	tenant, err := b.getTenant(ctx, s, rec.Tenant)
	if err != nil {
		return wire.Entry{}, err
	}
	e.TenantAllowedCIDRs = tenant.cidrs()
	if e.Status == wire.StatusActive {
		e.Metadata = rec.Metadata
	}
	return e, nil
}

const pathLookupHelpSyn = `Look up a key_id for a verifier: sealed digest, status, effective permissions.`

const pathLookupHelpDesc = `
Returns what a verifier needs to decide: status (active, disabled, expired,
revoked), its tenant, effective permissions (the key's own ∩ its role's current
ones ∩ its creator's platform role's), the role's workspaces, the key's address
allow-set (its CIDRs and its allow-lists'), the role's and the tenant's CIDRs, expiry, metadata, the sealed digest with its
transit-wrapped data key, and seq: the change-feed head read before the record.
Never returns a key or secret; the digest is sealed.
`
