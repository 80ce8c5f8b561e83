package backend

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
)

func TestRewrapMovesEveryRecordToNewKEK(t *testing.T) {
	e := configured(t)
	var ids []string
	var toks []token.Token
	for i := 0; i < 5; i++ {
		data := e.issue(fmt.Sprintf("k%d", i), nil)
		tok, _ := token.Parse(data["key"].(string))
		ids, toks = append(ids, tok.KeyID), append(toks, tok)
	}
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k0", nil)
	e.sealer.rotate()
	res := e.mustOK(logical.UpdateOperation, "rewrap", nil).Data
	assert.Equal(t, 5, res["records_rewrapped"])
	cfg, _ := e.b.loadConfig(context.Background(), e.s)
	for i, id := range ids {
		rec, err := e.b.getRecord(context.Background(), e.s, id)
		require.NoError(t, err)
		assert.Contains(t, rec.Sealed.WrappedDEK, "vault:v2:")
		dek, err := e.sealer.unwrap(rec.Sealed.WrappedDEK)
		require.NoError(t, err)
		got, err := envelope.Open(dek, rec.Sealed, envelope.AAD(cfg.MountID, id))
		require.NoError(t, err)
		want := toks[i].Digest()
		assert.True(t, token.Equal(got, want[:]))
	}
	// New keys use a data key wrapped under the new version.
	id := e.issue("fresh", nil)["key_id"].(string)
	rec, _ := e.b.getRecord(context.Background(), e.s, id)
	assert.Contains(t, rec.Sealed.WrappedDEK, "vault:v2:")
}
