package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func revokeFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"key_id": {Type: framework.TypeString, Description: "key_id of the key to revoke (as shown by read, list and audit lines)."},
		"key":    {Type: framework.TypeString, Description: "A leaked key itself: its format and checksum are checked, then its key_id is revoked.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
	}
}

func pathRevoke(b *Backend) []*framework.Path {
	tenantFields := revokeFields()
	tenantFields["tenant"] = tenantField()
	return []*framework.Path{
		{
			Pattern:      "revoke",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "revoke"},
			Fields:       revokeFields(),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRevokeWrite},
			},
			HelpSynopsis:    "Revoke any key of the mount by key_id, or by the leaked key itself (incident response).",
			HelpDescription: "Give exactly one of key_id or key. Revocation is immediate and final: the name is freed and verifiers answer REVOKED. Answers revoked=true with the key's last use.",
		},
		{
			Pattern:      tenantPrefix() + "revoke$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "revoke", OperationSuffix: "tenant-key"},
			Fields:       tenantFields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRevokeWrite},
			},
			HelpSynopsis:    "Revoke a key of this tenant by key_id, or by the leaked key itself.",
			HelpDescription: "Give exactly one of key_id or key. A key of another tenant is no key here: an error, and nothing changes. Answers revoked=true with the key's last use.",
		},
	}
}

func (b *Backend) pathRevokeWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	tenant := ""
	if _, ok := d.Schema["tenant"]; ok {
		var err error
		if tenant, err = tenantArg(d); err != nil {
			return badRequest(err)
		}
	}
	keyID := d.Get("key_id").(string)
	leaked := d.Get("key").(string)
	switch {
	case keyID != "" && leaked != "":
		return badRequest(errors.New("give key_id or key, not both"))
	case leaked != "":
		tok, err := token.Parse(leaked)
		if err != nil {
			// The error names the problem, never the input.
			return badRequest(fmt.Errorf("key is not a valid API key: %w", err))
		}
		keyID = tok.KeyID
	case keyID == "":
		return badRequest(errors.New("key_id or key is required"))
	case !token.ValidKeyID(keyID):
		return badRequest(keyIDError("key_id", keyID))
	}
	out, err := b.revokeID(ctx, req.Storage, tenant, keyID)
	if err != nil {
		return failed(err)
	}
	return b.revokedResponse(ctx, req.Storage, out)
}

// revokedResponse is what every revocation answers (Neon's shape): the key,
// revoked=true, the feed seq, and the key's last use.
func (b *Backend) revokedResponse(ctx context.Context, s logical.Storage, out *revoked) (*logical.Response, error) {
	u, err := b.getUsage(ctx, s, out.rec.KeyID)
	if err != nil {
		return nil, err
	}
	data := map[string]interface{}{
		"tenant": out.rec.Tenant, "name": out.rec.Name, "key_id": out.rec.KeyID,
		"status": wire.StatusRevoked, "revoked": true, "seq": out.seq,
	}
	addUsage(data, u)
	if out.already {
		data["already_revoked"] = true
	}
	return &logical.Response{Data: data}, nil
}
