package backend

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// maxGrace bounds how long a rotated-out key stays valid.
const maxGrace = 7 * 24 * time.Hour

// maxInGrace bounds how many rotated-out keys one name carries at once.
const maxInGrace = 10

func pathKeyActions(b *Backend) []*framework.Path {
	nameField := map[string]*framework.FieldSchema{
		"name": {Type: framework.TypeString, Required: true, Description: "Name of the key."},
	}
	action := func(verb, syn string, cb framework.OperationFunc) *framework.Path {
		return &framework.Path{
			Pattern:      "keys/" + framework.GenericNameRegex("name") + "/" + verb + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: verb, OperationSuffix: "key"},
			Fields:       nameField,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: cb},
			},
			HelpSynopsis:    syn,
			HelpDescription: syn + " Verifiers are told through the change feed at once.",
		}
	}
	return []*framework.Path{
		action("disable", "Disable a key: verifiers answer DISABLED until it is enabled again.", b.pathKeyDisable),
		action("enable", "Enable a disabled key again.", b.pathKeyEnable),
		{
			Pattern:      "keys/" + framework.GenericNameRegex("name") + "/rotate$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "rotate", OperationSuffix: "key"},
			Fields: map[string]*framework.FieldSchema{
				"name":  nameField["name"],
				"grace": {Type: framework.TypeDurationSecond, Default: 0, Description: "How long the old key stays valid after rotation (default 0 = revoked at once; at most 168h)."},
				"ttl":   {Type: framework.TypeDurationSecond, Description: "Lifetime of the new key (default as on create)."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeyRotate},
			},
			HelpSynopsis:    "Rotate a key: a new secret and key_id under the same name; the old one lives on for grace.",
			HelpDescription: pathRotateHelpDesc,
		},
	}
}

// withLiveKey runs fn on a name's current record under the name lock.
func (b *Backend) withLiveKey(ctx context.Context, s logical.Storage, name string, fn func(*NameEntry, *Record) (*logical.Response, error)) (*logical.Response, error) {
	if err := validName("key", name); err != nil {
		return badRequest(err)
	}
	lock := b.nameLock(name)
	lock.Lock()
	defer lock.Unlock()
	n, err := b.getName(ctx, s, name)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return badRequest(fmt.Errorf("no live key named %q (list keys with `vault list apikeys/keys`)", name))
	}
	rec, err := b.getRecord(ctx, s, n.KeyID)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("key %s: name entry without record %s", name, n.KeyID)
	}
	return fn(n, rec)
}

// setStatus disables or enables a key and publishes the change.
func (b *Backend) setStatus(ctx context.Context, s logical.Storage, name, status, op string) (*logical.Response, error) {
	return b.withLiveKey(ctx, s, name, func(n *NameEntry, rec *Record) (*logical.Response, error) {
		if st := rec.status(b.now()); st == wire.StatusExpired {
			return badRequest(fmt.Errorf("key %q has expired: issue a new one instead", name))
		}
		if rec.Status == status {
			return &logical.Response{Data: map[string]interface{}{"name": name, "key_id": rec.KeyID, "status": status}}, nil
		}
		rec.Status = status
		entry := nameEntryOf(rec, n.Previous)
		if err := b.putNamed(ctx, s, rec, entry); err != nil {
			return nil, err
		}
		b.index.Set(name, entry)
		if _, err := b.feed.Append(ctx, s, rec.KeyID, rec.Role, op, b.now()); err != nil {
			return nil, err
		}
		b.sendEvent(ctx, "key-"+op, "key_id", rec.KeyID, "name", name, "role", rec.Role)
		return &logical.Response{Data: map[string]interface{}{"name": name, "key_id": rec.KeyID, "status": status}}, nil
	})
}

func (b *Backend) pathKeyDisable(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.setStatus(ctx, req.Storage, d.Get("name").(string), wire.StatusDisabled, wire.OpDisabled)
}

func (b *Backend) pathKeyEnable(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.setStatus(ctx, req.Storage, d.Get("name").(string), wire.StatusActive, wire.OpEnabled)
}

// patchable are the fields `vault patch` may change; everything else is fixed at issuance.
var patchable = []string{"description", "metadata", "allowed_cidrs"}

func (b *Backend) pathKeyPatch(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	for field := range d.Raw {
		if field != "name" && !slices.Contains(patchable, field) {
			return badRequest(fmt.Errorf("%s cannot be patched: only description, metadata and allowed_cidrs can; rotate or issue a new key for the rest", printable(field)))
		}
	}
	// Validate everything before touching storage.
	var (
		desc  *string
		meta  map[string]string
		cidrs []string
		err   error
	)
	if v, ok := d.GetOk("description"); ok {
		s := v.(string)
		if err := validDescription(s); err != nil {
			return badRequest(err)
		}
		desc = &s
	}
	_, metaGiven := d.GetOk("metadata")
	if metaGiven {
		meta = d.Get("metadata").(map[string]string)
		if err := validMetadata(meta); err != nil {
			return badRequest(err)
		}
	}
	_, cidrsGiven := d.GetOk("allowed_cidrs")
	if cidrsGiven {
		if cidrs, err = normalizeCIDRs(d.Get("allowed_cidrs").([]string)); err != nil {
			return badRequest(err)
		}
	}
	return b.withLiveKey(ctx, req.Storage, d.Get("name").(string), func(n *NameEntry, rec *Record) (*logical.Response, error) {
		if desc != nil {
			rec.Description = *desc
		}
		if metaGiven {
			rec.Metadata = meta
		}
		if cidrsGiven {
			rec.AllowedCIDRs = cidrs
		}
		if err := b.putRecord(ctx, req.Storage, rec); err != nil {
			return nil, err
		}
		if _, err := b.feed.Append(ctx, req.Storage, rec.KeyID, rec.Role, wire.OpUpdated, b.now()); err != nil {
			return nil, err
		}
		b.sendEvent(ctx, "key-updated", "key_id", rec.KeyID, "name", rec.Name)
		return &logical.Response{Data: b.recordView(rec, nil, b.now())}, nil
	})
}

func (b *Backend) pathKeyRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	grace := time.Duration(d.Get("grace").(int)) * time.Second
	if grace < 0 || grace > maxGrace {
		return badRequest(fmt.Errorf("grace must be between 0 and %s", maxGrace))
	}
	sealer, cfg, err := b.sealerFor(ctx, req.Storage)
	if err != nil {
		return badRequest(err)
	}
	return b.withLiveKey(ctx, req.Storage, d.Get("name").(string), func(n *NameEntry, old *Record) (*logical.Response, error) {
		if old.status(b.now()) != wire.StatusActive {
			return badRequest(fmt.Errorf("key %q is %s: only an active key can be rotated", old.Name, old.status(b.now())))
		}
		if grace > 0 && len(n.Previous) >= maxInGrace {
			return badRequest(fmt.Errorf("key %q already has %d keys in rotation grace: revoke them (vault write apikeys/revoke key_id=…) or rotate with grace=0", old.Name, len(n.Previous)))
		}
		role, err := b.getRole(ctx, req.Storage, old.Role)
		if err != nil {
			return nil, err
		}
		if role == nil {
			return badRequest(fmt.Errorf("role %q of key %q no longer exists: issue a new key under another role", old.Role, old.Name))
		}
		ttl, err := resolveTTL(d, role, cfg)
		if err != nil {
			return badRequest(err)
		}
		kr := &keyRequest{name: old.Name, workspace: old.Workspace, description: old.Description, role: role,
			ttl: ttl, cidrs: old.AllowedCIDRs, permissions: old.Permissions, metadata: old.Metadata}
		tok, err := token.Generate(cfg.Prefix)
		if err != nil {
			return nil, err
		}
		rec, err := b.newRecord(ctx, req, sealer, cfg, tok, kr)
		if err != nil {
			return nil, err
		}
		previous := slices.Clone(n.Previous)
		now := b.now()
		if grace > 0 {
			until := now.Add(grace)
			old.GraceUntil, old.RotatedTo = &until, rec.KeyID
			if old.ExpiresAt == nil || until.Before(*old.ExpiresAt) {
				old.ExpiresAt = &until
			}
			previous = append(previous, old.KeyID)
			if err := putJSON(ctx, req.Storage, expKey(until, old.KeyID), map[string]string{"key_id": old.KeyID}); err != nil {
				return nil, err
			}
			if err := b.putRecord(ctx, req.Storage, old); err != nil {
				return nil, err
			}
		}
		if err := b.putIndexes(ctx, req.Storage, rec); err != nil {
			return nil, err
		}
		entry := nameEntryOf(rec, previous)
		if err := b.putNamed(ctx, req.Storage, rec, entry); err != nil {
			return nil, err
		}
		b.index.Set(rec.Name, entry)
		if grace == 0 {
			if err := b.revokeRecord(ctx, req.Storage, old); err != nil {
				return nil, err
			}
		} else if _, err := b.feed.Append(ctx, req.Storage, old.KeyID, old.Role, wire.OpRotated, now); err != nil {
			return nil, err
		}
		if _, err := b.feed.Append(ctx, req.Storage, rec.KeyID, rec.Role, wire.OpCreated, now); err != nil {
			return nil, err
		}
		b.sendEvent(ctx, "key-rotated", "key_id", rec.KeyID, "previous_key_id", old.KeyID, "name", rec.Name)
		data := b.recordView(rec, nil, now)
		data["key"] = tok.String()
		data["previous_key_id"] = old.KeyID
		data["previous_valid_until"] = formatTime(old.GraceUntil)
		return &logical.Response{Data: data}, nil
	})
}

// dropPrevious removes a rotated-out key_id from its name's grace list. The
// caller holds the name lock.
func (b *Backend) dropPrevious(ctx context.Context, s logical.Storage, name, keyID string) error {
	n, err := b.getName(ctx, s, name)
	if err != nil || n == nil {
		return err
	}
	i := slices.Index(n.Previous, keyID)
	if i < 0 {
		return nil
	}
	n.Previous = slices.Delete(n.Previous, i, i+1)
	if err := putJSON(ctx, s, storageNamePrefix+name, n); err != nil {
		return err
	}
	b.index.Set(name, *n)
	return nil
}

// revokeKeyID revokes one key_id wherever it stands: the current key of its
// name (which frees the name) or a rotated-out key in grace.
func (b *Backend) revokeKeyID(ctx context.Context, s logical.Storage, rec *Record) error {
	if rec.Status == wire.StatusRevoked {
		return nil
	}
	lock := b.nameLock(rec.Name)
	lock.Lock()
	defer lock.Unlock()
	// Re-read under the lock: another writer may have revoked it meanwhile.
	rec, err := b.getRecord(ctx, s, rec.KeyID)
	if err != nil || rec == nil || rec.Status == wire.StatusRevoked {
		return err
	}
	n, err := b.getName(ctx, s, rec.Name)
	if err != nil {
		return err
	}
	if n != nil && n.KeyID == rec.KeyID {
		return b.revokeName(ctx, s, rec.Name, n)
	}
	if err := b.revokeRecord(ctx, s, rec); err != nil {
		return err
	}
	return b.dropPrevious(ctx, s, rec.Name, rec.KeyID)
}

const pathRotateHelpDesc = `
Issues a new key (new key_id and secret) under the same name, role, workspace,
permissions, CIDRs and metadata, and returns it once. The old key stays valid for
grace (default 0: revoked at once; at most 7 days), shown in read under
previous_keys, and is revoked when the grace ends. Runbook: rotate with grace,
deploy the new key everywhere, and the old one stops working by itself.
`
