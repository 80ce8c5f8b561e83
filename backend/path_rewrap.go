package backend

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathRewrap(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "rewrap",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "rewrap"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathRewrapWrite},
		},
		HelpSynopsis:    "Rewrap every record's data key under the newest transit key version.",
		HelpDescription: pathRewrapHelpDesc,
	}}
}

func (b *Backend) pathRewrapWrite(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	sealer, _, err := b.sealerFor(ctx, req.Storage)
	if err != nil {
		return badRequest(err)
	}
	// New records must not keep using a data key wrapped under the old version.
	sealer.Forget()
	ids, err := req.Storage.List(ctx, storageKeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("list records: %w", err)
	}
	// Many records share a data key: rewrap each distinct one once.
	byDEK := map[string][]string{}
	for _, id := range ids {
		rec, err := b.getRecord(ctx, req.Storage, id)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			byDEK[rec.Sealed.WrappedDEK] = append(byDEK[rec.Sealed.WrappedDEK], id)
		}
	}
	wrapped := make([]string, 0, len(byDEK))
	for w := range byDEK {
		wrapped = append(wrapped, w)
	}
	fresh, err := sealer.Rewrap(ctx, wrapped)
	if err != nil {
		return badRequest(err)
	}
	updated := 0
	for i, old := range wrapped {
		if fresh[i] == old {
			continue
		}
		for _, id := range byDEK[old] {
			ok, err := b.swapDEK(ctx, req.Storage, id, old, fresh[i])
			if err != nil {
				return nil, err
			}
			if ok {
				updated++
			}
		}
	}
	return &logical.Response{Data: map[string]interface{}{
		"records": len(ids), "records_rewrapped": updated, "data_keys_rewrapped": len(wrapped),
	}}, nil
}

// swapDEK replaces a record's wrapped data key under its name lock, unless a
// concurrent write already changed it.
func (b *Backend) swapDEK(ctx context.Context, s logical.Storage, keyID, old, fresh string) (bool, error) {
	rec, unlock, err := b.lockRecord(ctx, s, keyID)
	defer unlock()
	if err != nil || rec == nil || rec.Sealed.WrappedDEK != old {
		return false, err
	}
	rec.Sealed.WrappedDEK = fresh
	return true, b.putRecord(ctx, s, rec)
}

const pathRewrapHelpDesc = `
KEK rotation runbook: vault write -f transit/keys/apikeys/rotate, then
vault write -f apikeys/rewrap. Every record's wrapped data key is then on the
newest version, and older versions can be retired with
vault write transit/keys/apikeys/config min_decryption_version=<newest>.
Rewrap changes no secret, digest or key_id and publishes no change.
`
