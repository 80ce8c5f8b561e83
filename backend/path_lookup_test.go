package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
)

func (e *testEnv) lookupStatus(id string) string {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "lookup/"+id, nil)
	if resp == nil {
		return "not_found"
	}
	return resp.Data["status"].(string)
}

func TestSealedDigestOpensOnlyForItsKey(t *testing.T) {
	e := configured(t)
	data := e.issue("k", nil)
	tok, err := token.Parse(data["key"].(string))
	require.NoError(t, err)
	rec, err := e.b.getRecord(context.Background(), e.s, tok.KeyID)
	require.NoError(t, err)
	dek, err := e.sealer.unwrap(rec.Sealed.WrappedDEK)
	require.NoError(t, err)
	cfg, _ := e.b.loadConfig(context.Background(), e.s)
	got, err := envelope.Open(dek, rec.Sealed, envelope.AAD(cfg.MountID, tok.KeyID))
	require.NoError(t, err)
	want := tok.Digest()
	assert.True(t, token.Equal(got, want[:]))
	_, err = envelope.Open(dek, rec.Sealed, envelope.AAD("other-mount", tok.KeyID))
	assert.Error(t, err)
}

func TestBatchLookup(t *testing.T) {
	e := configured(t)
	a := e.issue("a", nil)["key_id"].(string)
	b := e.issue("b", nil)["key_id"].(string)
	e.mustOK(logical.DeleteOperation, "keys/b", nil)
	data := e.mustOK(logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": []string{a, b, "ZZZZZZZZZZZZZZZZ"}}).Data
	entries := data["entries"].([]interface{})
	require.Len(t, entries, 3)
	status := func(i int) string { return entries[i].(map[string]interface{})["status"].(string) }
	assert.Equal(t, "active", status(0))
	assert.Equal(t, "revoked", status(1))
	assert.Equal(t, "not_found", status(2))
	assert.NotEmpty(t, data["seq"])
	assert.Nil(t, e.mustOK(logical.ReadOperation, "lookup/ZZZZZZZZZZZZZZZZ", nil))
}
