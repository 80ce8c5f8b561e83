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

func pathRevoke(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "revoke",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "revoke"},
		Fields: map[string]*framework.FieldSchema{
			"key_id": {Type: framework.TypeString, Description: "key_id of the key to revoke (as shown by read, list and audit lines)."},
			"key":    {Type: framework.TypeString, Description: "A leaked key itself: its format and checksum are checked, then its key_id is revoked.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRevokeWrite},
		},
		HelpSynopsis:    "Revoke a key by key_id, or by the leaked key itself.",
		HelpDescription: "Give exactly one of key_id or key. Revocation is immediate and final: the name is freed and verifiers answer REVOKED.",
	}}
}

func (b *Backend) pathRevokeWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
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
	out, err := b.revokeID(ctx, req.Storage, keyID)
	if err != nil {
		return failed(err)
	}
	data := map[string]interface{}{"key_id": keyID, "name": out.rec.Name, "status": wire.StatusRevoked, "seq": out.seq}
	if out.already {
		data["already_revoked"] = true
	}
	return &logical.Response{Data: data}, nil
}
