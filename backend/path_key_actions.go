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

func pathKeyActions(b *Backend) []*framework.Path {
	nameField := map[string]*framework.FieldSchema{
		"tenant": tenantField(),
		"name":   {Type: framework.TypeString, Required: true, Description: "Name of the key."},
	}
	action := func(verb, syn string, cb framework.OperationFunc) *framework.Path {
		return &framework.Path{
			Pattern:      tenantPrefix() + "keys/" + framework.GenericNameRegex("name") + "/" + verb + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: verb, OperationSuffix: "key"},
			Fields:       nameField,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: cb},
			},
			HelpSynopsis:    syn,
			HelpDescription: syn + " Verifiers are told through the change feed at once.",
		}
	}
	byID := func(verb, syn string, cb framework.OperationFunc) *framework.Path {
		return &framework.Path{
			Pattern:      tenantPrefix() + verb + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: verb, OperationSuffix: "key-by-id"},
			Fields: map[string]*framework.FieldSchema{
				"tenant": tenantField(),
				"key_id": {Type: framework.TypeString, Required: true, Description: "key_id of the key (as shown by read and list)."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: cb},
			},
			HelpSynopsis:    syn + " By key_id; it applies to the key's name, as by name.",
			HelpDescription: syn + " Verifiers are told through the change feed at once.",
		}
	}
	return []*framework.Path{
		action("disable", "Disable a key: verifiers answer DISABLED until it is enabled again.", b.pathKeyDisable),
		action("enable", "Enable a disabled key again.", b.pathKeyEnable),
		byID("disable", "Disable a key: verifiers answer DISABLED until it is enabled again.", b.pathKeyDisable),
		byID("enable", "Enable a disabled key again.", b.pathKeyEnable),
		{
			Pattern:      tenantPrefix() + "keys/" + framework.GenericNameRegex("name") + "/rotate$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "rotate", OperationSuffix: "key"},
			Fields: map[string]*framework.FieldSchema{
				"tenant": nameField["tenant"],
				"name":   nameField["name"],
				"grace":  {Type: framework.TypeDurationSecond, Default: 0, Description: "How long the old key stays valid after rotation (default 0 = revoked at once; at most 168h)."},
				"ttl":    {Type: framework.TypeDurationSecond, Description: "Lifetime of the new key (default as on create)."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathKeyRotate},
			},
			HelpSynopsis:    "Rotate a key: a new secret and key_id under the same name; the old one lives on for grace.",
			HelpDescription: pathRotateHelpDesc,
		},
	}
}

func (b *Backend) pathKeyDisable(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.pathKeySetStatus(ctx, req, d, wire.StatusDisabled, wire.OpDisabled)
}

func (b *Backend) pathKeyEnable(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.pathKeySetStatus(ctx, req, d, wire.StatusActive, wire.OpEnabled)
}

func (b *Backend) pathKeySetStatus(ctx context.Context, req *logical.Request, d *framework.FieldData, status, op string) (*logical.Response, error) {
	ref, err := b.actionRef(ctx, req, d)
	if err != nil {
		return failed(err)
	}
	out, err := b.setStatus(ctx, req.Storage, ref, status, op)
	if err != nil {
		return failed(err)
	}
	return &logical.Response{Data: map[string]interface{}{"name": out.name, "key_id": out.keyID, "status": out.status, "seq": out.seq}}, nil
}

// actionRef is the key an action names: by name in its path, or by key_id
// (which must be a key of the path's tenant: another tenant's is no key here).
func (b *Backend) actionRef(ctx context.Context, req *logical.Request, d *framework.FieldData) (string, error) {
	if _, byName := d.Schema["name"]; byName {
		ref, err := keyRef(d)
		if err != nil {
			return "", &inputError{msg: err.Error()}
		}
		return ref, nil
	}
	tenant, err := tenantArg(d)
	if err != nil {
		return "", &inputError{msg: err.Error()}
	}
	keyID := d.Get("key_id").(string)
	if !token.ValidKeyID(keyID) {
		return "", &inputError{msg: keyIDError("key_id", keyID).Error()}
	}
	rec, err := b.getRecord(ctx, req.Storage, keyID)
	if err != nil {
		return "", err
	}
	if rec == nil || rec.Tenant != tenant || rec.Status == wire.StatusRevoked {
		return "", invalid("no live key with key_id %s in tenant %q", keyID, printable(tenant))
	}
	return rec.ref(), nil
}

// patchable are the fields `vault patch` may change; everything else is fixed at issuance.
var patchable = []string{"description", "metadata", "allowed_cidrs", "allowlists"}

func (b *Backend) pathKeyPatch(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	for field := range d.Raw {
		if field != "name" && field != "tenant" && !slices.Contains(patchable, field) {
			return badRequest(fmt.Errorf("%s cannot be patched: only description, metadata, allowed_cidrs and allowlists can; rotate or issue a new key for the rest", printable(field)))
		}
	}
	// Validate everything before touching storage.
	var p keyPatch
	if v, ok := d.GetOk("description"); ok {
		desc := v.(string)
		if err := validDescription(desc); err != nil {
			return badRequest(err)
		}
		p.description = &desc
	}
	if _, ok := d.GetOk("metadata"); ok {
		meta := d.Get("metadata").(map[string]string)
		if err := validMetadata(meta); err != nil {
			return badRequest(err)
		}
		p.metadata = &meta
	}
	if _, ok := d.GetOk("allowed_cidrs"); ok {
		cidrs, err := normalizeCIDRs(d.Get("allowed_cidrs").([]string))
		if err != nil {
			return badRequest(err)
		}
		p.cidrs = &cidrs
	}
	if _, ok := d.GetOk("allowlists"); ok {
		lists := d.Get("allowlists").([]string)
		if err := validAllowlistNames(lists); err != nil {
			return badRequest(err)
		}
		p.allowlists = &lists
	}
	ref, err := keyRef(d)
	if err != nil {
		return badRequest(err)
	}
	rec, seq, err := b.patch(ctx, req.Storage, ref, p)
	if err != nil {
		return failed(err)
	}
	data := recordView(rec, nil, b.now())
	data["seq"] = seq
	return &logical.Response{Data: data}, nil
}

func (b *Backend) pathKeyRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ref, err := keyRef(d)
	if err != nil {
		return badRequest(err)
	}
	grace := time.Duration(d.Get("grace").(int)) * time.Second
	ttl, ttlGiven := ttlField(d)
	out, err := b.rotate(ctx, req, ref, grace, ttl, ttlGiven)
	if err != nil {
		return failed(err)
	}
	data := recordView(out.rec, nil, out.rec.CreatedAt)
	data["key"] = out.key.String()
	data["previous_key_id"] = out.previous.KeyID
	data["previous_valid_until"] = formatTime(out.previous.GraceUntil)
	data["seq"] = out.seq
	return &logical.Response{Data: data}, nil
}

const pathRotateHelpDesc = `
Issues a new key (new key_id and secret) under the same name, role, workspace,
permissions, CIDRs and metadata, and returns it once. The old key stays valid for
grace (default 0: revoked at once; at most 7 days), shown in read under
previous_keys, and is revoked when the grace ends. Runbook: rotate with grace,
deploy the new key everywhere, and the old one stops working by itself.
`
