package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func (e *testEnv) lookup(keyID string) wire.Entry {
	e.t.Helper()
	raw, err := json.Marshal(e.mustOK(logical.ReadOperation, "lookup/"+keyID, nil).Data)
	require.NoError(e.t, err)
	var out wire.Entry
	require.NoError(e.t, json.Unmarshal(raw, &out))
	return out
}

// Narrowing a role's allowed_workspaces caps keys pinned to a workspace, as
// permissions and CIDRs do: the change is on the feed, and the lookup's answer
// no longer grants the dropped workspace.
func TestWorkspaceNarrowingCapsPinnedKeys(t *testing.T) {
	e := configured(t) // role dev allows prod, dev-*
	prod := e.issue("p", map[string]interface{}{"workspace": "prod"})["key_id"].(string)
	dev := e.issue("d", map[string]interface{}{"workspace": "dev-eu"})["key_id"].(string)
	before := e.lookup(prod)
	require.True(t, before.WorkspaceGrants("prod"))
	head := e.changes(0, "").Head

	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"allowed_workspaces": "dev-*"})

	feed := e.changes(head, "")
	require.Len(t, feed.Changes, 1)
	assert.Equal(t, wire.OpRoleUpdated, feed.Changes[0].Op)
	assert.Equal(t, "dev", feed.Changes[0].Role)
	p := e.lookup(prod)
	assert.GreaterOrEqual(t, p.Seq, feed.Changes[0].Seq)
	assert.False(t, p.WorkspaceGrants("prod"), "prod is no longer allowed by the role")
	d := e.lookup(dev)
	assert.True(t, d.WorkspaceGrants("dev-eu"), "dev-eu still is")
}

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
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/b", nil)
	data := e.mustOK(logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": []string{a, b, "ZZZZZZZZZZZZZZZZ"}}).Data
	entries := data["entries"].([]interface{})
	require.Len(t, entries, 3)
	status := func(i int) string { return entries[i].(map[string]interface{})["status"].(string) }
	assert.Equal(t, "active", status(0))
	assert.Equal(t, "revoked", status(1))
	assert.Equal(t, "not_found", status(2))
	assert.NotEmpty(t, data["seq"])
	assert.Nil(t, e.mustOK(logical.ReadOperation, "lookup/ZZZZZZZZZZZZZZZZ", nil))

	// A read with the key_ids in the query (as Vault hands a GET's query to
	// the plugin: one comma-separated string) answers the same.
	read := e.mustOK(logical.ReadOperation, "lookup", map[string]interface{}{"key_ids": a + "," + b + ",ZZZZZZZZZZZZZZZZ"}).Data
	assert.Equal(t, data, read)
	e.mustFail(logical.ReadOperation, "lookup", nil, "key_ids must list 1 to 100")
	e.mustFail(logical.ReadOperation, "lookup", map[string]interface{}{"key_ids": strings.Repeat("ZZZZZZZZZZZZZZZZ,", wire.MaxBatch+1)}, "key_ids must list 1 to 100")
	e.mustFail(logical.ReadOperation, "lookup", map[string]interface{}{"key_ids": "not-a-key-id"}, "key_ids[0]")
}

// lookupBatchOf builds a batch answer of n active entries, as the bench's keys
// look.
func lookupBatchOf(n int) wire.Batch {
	batch := wire.Batch{Seq: 42}
	sealed := envelope.Sealed{WrappedDEK: "vault:v1:" + strings.Repeat("w", 80), V: 1, Nonce: strings.Repeat("n", 16), Ciphertext: strings.Repeat("c", 64)}
	for i := 0; i < n; i++ {
		batch.Entries = append(batch.Entries, wire.Entry{KeyID: fmt.Sprintf("Key%013d", i), Status: wire.StatusActive, Tenant: "acme",
			Name: fmt.Sprintf("key-%d", i), Role: "bench", Permissions: []string{"clusters:read", "clusters:write"},
			MountID: "mount-id", Seq: 42, Sealed: &sealed})
	}
	return batch
}

// The SDK hands Vault a response's Data as JSON: responseData must encode to
// exactly what the generic map did, so clients see the same answer. (The
// plugin's JSON keeps a seq past 2^53 exact, as before; Vault then decodes it
// as a float64, as it always has.)
func TestResponseDataEncodesLikeTheGenericMap(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	batch := lookupBatchOf(3)
	batch.Entries[1].ExpiresAt = &exp
	batch.Entries[1].Seq = 1<<53 + 1
	full := &batch.Entries[2] // every omitempty field set
	full.Workspace, full.CreatorRole, full.Metadata = "prod", "admin", map[string]string{"team": "a"}
	full.AllowedWorkspaces, full.AllowedCIDRs = []string{"dev-*"}, []string{"10.0.0.0/8"}
	full.RoleAllowedCIDRs, full.TenantAllowedCIDRs = []string{"10.1.0.0/16"}, []string{"10.1.2.0/24"}
	batch.Entries = append(batch.Entries, wire.Entry{KeyID: "ZZZZZZZZZZZZZZZZ", Status: wire.StatusNotFound, Seq: 1})
	for name, v := range map[string]interface{}{"batch": batch, "entry": batch.Entries[1], "full entry": *full,
		"changes": wire.Changes{Head: 1<<53 + 1, Reset: true, Changes: []wire.Change{{Seq: 3, ID: "x", Op: "created", Time: exp}}}} {
		want, err := json.Marshal(structToMap(v))
		require.NoError(t, err)
		got, err := json.Marshal(responseData(v))
		require.NoError(t, err)
		assert.JSONEq(t, string(want), string(got), name)
		if name != "full entry" {
			assert.Contains(t, string(got), "9007199254740993", "the plugin's JSON keeps numbers exact") // 2^53+1
		}
	}
}

// BenchmarkLookupResponse is the plugin's part of answering a lookup batch of
// 5 entries (the bench's average) after the entries are built: Data rendered,
// then encoded as the SDK sends it to Vault. generic-map is how it was done
// before (structToMap), typed-fields is now (responseData): this change's
// before/after, measured in one run.
func BenchmarkLookupResponse(b *testing.B) {
	batch := lookupBatchOf(5)
	for name, render := range map[string]func(interface{}) map[string]interface{}{"generic-map": structToMap, "typed-fields": responseData} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(render(batch)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
