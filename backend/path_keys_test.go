package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestIssueReadListRevoke(t *testing.T) {
	e := configured(t)
	data := e.issue("ci-deploy", map[string]interface{}{"workspace": "prod", "description": "CI deploys", "ttl": "720h", "metadata": map[string]interface{}{"team": "infra"}})
	key := data["key"].(string)
	tok, err := token.Parse(key)
	require.NoError(t, err)
	assert.Equal(t, "vak", tok.Prefix)
	assert.Equal(t, tok.KeyID, data["key_id"])
	assert.Equal(t, "active", data["status"])
	assert.NotEmpty(t, data["expires_at"])

	read := e.mustOK(logical.ReadOperation, "keys/ci-deploy", nil).Data
	assert.NotContains(t, read, "key")
	assert.Equal(t, "prod", read["workspace"])
	assert.Equal(t, "developer"+"", "developer") // role name is dev here
	assert.Equal(t, "dev", read["role"])
	assert.Equal(t, map[string]string{"team": "infra"}, read["metadata"])
	assert.NotContains(t, fmt.Sprint(read), tok.Secret)

	list := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{}).Data
	assert.Equal(t, []string{"ci-deploy"}, list["keys"])
	info := list["key_info"].(map[string]interface{})["ci-deploy"].(map[string]interface{})
	assert.Equal(t, tok.KeyID, info["key_id"])

	e.mustOK(logical.DeleteOperation, "keys/ci-deploy", nil)
	resp := e.mustOK(logical.ReadOperation, "keys/ci-deploy", nil)
	assert.Nil(t, resp, "name is free after revoke")
	lk := e.mustOK(logical.ReadOperation, "lookup/"+tok.KeyID, nil).Data
	assert.Equal(t, wire.StatusRevoked, lk["status"])
	// The name can be issued again.
	again := e.issue("ci-deploy", map[string]interface{}{"workspace": "prod"})
	assert.NotEqual(t, tok.KeyID, again["key_id"])
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

func TestNoSecretInStorage(t *testing.T) {
	e := configured(t)
	var secrets []string
	for i := 0; i < 20; i++ {
		data := e.issue(fmt.Sprintf("k%d", i), map[string]interface{}{"workspace": "prod"})
		tok, _ := token.Parse(data["key"].(string))
		secrets = append(secrets, data["key"].(string), tok.Secret)
	}
	e.mustOK(logical.DeleteOperation, "keys/k3", nil)
	for k, v := range e.snapshot() {
		for _, s := range secrets {
			require.NotContains(t, v, s, "secret found in storage entry %s", k)
		}
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	e := configured(t)
	e.issue("taken", map[string]interface{}{"workspace": "prod"})
	long := strings.Repeat("n", 300)
	cases := []struct {
		name string
		op   logical.Operation
		path string
		data map[string]interface{}
		want string
	}{
		{"overlong name", logical.CreateOperation, "keys/" + long, map[string]interface{}{"role": "dev"}, "limit is 128"},
		{"odd name", logical.CreateOperation, "keys/-bad", map[string]interface{}{"role": "dev"}, "invalid"},
		{"dot name", logical.CreateOperation, "keys/..", map[string]interface{}{"role": "dev"}, "invalid"},
		{"space name", logical.CreateOperation, "keys/a b", map[string]interface{}{"role": "dev"}, "invalid"},
		{"unicode name", logical.CreateOperation, "keys/ключ", map[string]interface{}{"role": "dev"}, "invalid"},
		{"control name", logical.CreateOperation, "keys/a\x00b", map[string]interface{}{"role": "dev"}, "invalid"},
		{"missing role", logical.CreateOperation, "keys/x", map[string]interface{}{}, "role is required"},
		{"unknown role", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "nope"}, "unknown role"},
		{"workspace not allowed", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "workspace": "staging"}, "not allowed by role"},
		{"bad workspace", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "workspace": "dev-/x"}, "invalid"},
		{"ttl over max", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "ttl": "99999h"}, "exceeds the max_ttl"},
		{"negative ttl", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "ttl": "-1h"}, "negative"},
		{"never-expire under max_ttl", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "ttl": "0"}, "never expires"},
		{"malformed cidr", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "allowed_cidrs": "10.0.0.0/33"}, "not a cidr"},
		{"junk cidr", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "allowed_cidrs": "hello"}, "not a cidr"},
		{"metadata key", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "metadata": map[string]interface{}{"bad key": "v"}}, "metadata key"},
		{"metadata value control", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "metadata": map[string]interface{}{"k": "a\nb"}}, "control"},
		{"metadata too long", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "metadata": map[string]interface{}{"k": strings.Repeat("v", 600)}}, "limit"},
		{"oversized description", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "description": strings.Repeat("d", 2000)}, "limit is 1024"},
		{"bad permission", logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev", "permissions": "drop table"}, "permission"},
		{"duplicate create", logical.CreateOperation, "keys/taken", map[string]interface{}{"role": "dev", "workspace": "prod"}, "already exists"},
		{"update existing", logical.UpdateOperation, "keys/taken", map[string]interface{}{"role": "dev"}, "already exists"},
		{"delete unknown", logical.DeleteOperation, "keys/ghost", nil, "no live key"},
		{"revoke unknown id", logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": "AAAAAAAAAAAAAAAA"}, "no key with key_id"},
		{"revoke malformed id", logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": "short"}, "not a key_id"},
		{"revoke junk key", logical.UpdateOperation, "revoke", map[string]interface{}{"key": "vak_nope"}, "not a valid api key"},
		{"revoke both", logical.UpdateOperation, "revoke", map[string]interface{}{"key": "a", "key_id": "b"}, "not both"},
		{"revoke nothing", logical.UpdateOperation, "revoke", map[string]interface{}{}, "required"},
		{"lookup malformed", logical.ReadOperation, "lookup/abc", nil, "not a key_id"},
		{"batch lookup empty", logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": []string{}}, "1 to 100"},
		{"batch lookup too many", logical.UpdateOperation, "lookup", map[string]interface{}{"key_ids": strings.Split(strings.Repeat("AAAAAAAAAAAAAAAA,", 101), ",")[:101]}, "1 to 100"},
		{"changes bad after", logical.ReadOperation, "changes", map[string]interface{}{"after": "-1"}, "sequence number"},
		{"changes bad wait", logical.ReadOperation, "changes", map[string]interface{}{"wait": "soon"}, "not a duration"},
		{"list bad limit", logical.ListOperation, "keys/", map[string]interface{}{"limit": 0}, "limit"},
		{"list bad status", logical.ListOperation, "keys/", map[string]interface{}{"status": "weird"}, "status filter"},
		{"role no permissions", logical.CreateOperation, "roles/r", map[string]interface{}{"permissions": ""}, "permissions must not be empty"},
		{"role bad glob", logical.CreateOperation, "roles/r", map[string]interface{}{"permissions": "a:b", "allowed_workspaces": "[x"}, "glob"},
		{"role ttl over max", logical.CreateOperation, "roles/r", map[string]interface{}{"permissions": "a:b", "ttl": "10h", "max_ttl": "1h"}, "longer than max_ttl"},
		{"role bad name", logical.CreateOperation, "roles/-r", map[string]interface{}{"permissions": "a:b"}, "invalid"},
		{"role negative quota", logical.CreateOperation, "roles/r", map[string]interface{}{"permissions": "a:b", "max_keys": -1}, "max_keys"},
		{"delete unknown role", logical.DeleteOperation, "roles/ghost", nil, "no role"},
		{"config bad prefix", logical.UpdateOperation, "config", map[string]interface{}{"prefix": "Bad"}, "prefix"},
		{"config bad addr", logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "ftp://x"}, "not an http"},
		{"usage bad time", logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{map[string]interface{}{"key_id": "AAAAAAAAAAAAAAAA", "count": 1, "last_used_at": "yesterday"}}}, "rfc 3339"},
		{"usage bad ip", logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{map[string]interface{}{"key_id": "AAAAAAAAAAAAAAAA", "count": 1, "last_used_at": "2026-01-01T00:00:00Z", "last_used_from": "nope"}}}, "not an ip"},
		{"usage unknown field", logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{map[string]interface{}{"key_id": "AAAAAAAAAAAAAAAA", "bogus": 1}}}, "malformed"},
	}
	require.GreaterOrEqual(t, len(cases), 30)
	before := e.snapshot()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.mustFail(tc.op, tc.path, tc.data, tc.want)
		})
	}
	e.t = t
	assert.Equal(t, before, e.snapshot(), "bad input must not change storage")
}

func TestMissingConfig(t *testing.T) {
	e := newTestEnv(t)
	e.mustFail(logical.CreateOperation, "keys/x", map[string]interface{}{"role": "dev"}, "not configured")
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"token": "t"}, "vault_addr is required")
	e.mustFail(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://a"}, "token is required")
	assert.Empty(t, e.snapshot())
}

func TestConfigTokenIsWriteOnly(t *testing.T) {
	e := configured(t)
	data := e.mustOK(logical.ReadOperation, "config", nil).Data
	assert.NotContains(t, data, "token")
	assert.Equal(t, true, data["token_set"])
	assert.Equal(t, "transit", data["transit_mount"])
	assert.Equal(t, 10000, data["max_keys"])
	assert.NotEmpty(t, data["mount_id"])
	// A second write keeps the mount id (records stay bound to it).
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys": 5})
	assert.Equal(t, data["mount_id"], e.mustOK(logical.ReadOperation, "config", nil).Data["mount_id"])
}

func TestListPagesAndFilters(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.CreateOperation, "roles/ops", map[string]interface{}{"permissions": "*"})
	for i := 0; i < 25; i++ {
		role, ws := "dev", "prod"
		if i%5 == 0 {
			role, ws = "ops", ""
		}
		e.issue(fmt.Sprintf("key-%02d", i), map[string]interface{}{"role": role, "workspace": ws})
	}
	page := func(data map[string]interface{}) []string {
		keys, _ := e.mustOK(logical.ListOperation, "keys/", data).Data["keys"].([]string)
		return keys
	}
	first := page(map[string]interface{}{"limit": 10})
	require.Len(t, first, 10)
	assert.Equal(t, "key-00", first[0])
	second := page(map[string]interface{}{"limit": 10, "after": first[9]})
	assert.Equal(t, "key-10", second[0])
	assert.Len(t, page(map[string]interface{}{"role": "ops"}), 5)
	assert.Len(t, page(map[string]interface{}{"workspace": "prod"}), 20)
	assert.Len(t, page(map[string]interface{}{"status": "disabled"}), 0)
	assert.Len(t, page(map[string]interface{}{"status": "active", "role": "ops", "limit": 2}), 2)
}

func TestQuotaAtBoundary(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys": 3})
	e.mustOK(logical.CreateOperation, "roles/small", map[string]interface{}{"permissions": "*", "max_keys": 2})
	e.issue("a", map[string]interface{}{"role": "small"})
	e.issue("b", map[string]interface{}{"role": "small"})
	e.mustFail(logical.CreateOperation, "keys/c", map[string]interface{}{"role": "small"}, "key limit exceeded")
	e.issue("c", nil)
	before := e.snapshot()
	e.mustFail(logical.CreateOperation, "keys/d", map[string]interface{}{"role": "dev"}, "key limit exceeded")
	assert.Equal(t, before, e.snapshot())
	e.mustOK(logical.DeleteOperation, "keys/a", nil)
	e.issue("d", map[string]interface{}{"role": "small"})
	role := e.mustOK(logical.ReadOperation, "roles/small", nil).Data
	assert.Equal(t, 2, role["key_count"])
}

func TestConcurrentCreatesNeverExceedLimit(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys": 10})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			name := fmt.Sprintf("k%d", i%30) // some names collide on purpose
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.CreateOperation, Path: "keys/" + name, Storage: e.s,
				Data: map[string]interface{}{"role": "dev"},
			})
			if err == nil && resp != nil && !resp.IsError() {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	assert.Equal(t, 10, ok)
	names, err := e.s.List(context.Background(), storageNamePrefix)
	require.NoError(t, err)
	assert.Len(t, names, 10)
}

func TestIndexSurvivesRestart(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_keys": 2})
	e.issue("a", nil)
	e.issue("b", nil)
	// A fresh backend on the same storage (a restart or failover) rebuilds the
	// index and the quota counters from storage.
	b2 := New(e.b.newSealer)
	conf := logical.TestBackendConfig()
	conf.StorageView = e.s
	require.NoError(t, b2.Setup(context.Background(), conf))
	e2 := &testEnv{t: t, b: b2, s: e.s, sealer: e.sealer}
	e2.mustFail(logical.CreateOperation, "keys/c", map[string]interface{}{"role": "dev"}, "key limit exceeded")
	keys := e2.mustOK(logical.ListOperation, "keys/", map[string]interface{}{}).Data["keys"]
	assert.Equal(t, []string{"a", "b"}, keys)
}

func TestRevokeByIDAndLeakedKey(t *testing.T) {
	e := configured(t)
	a := e.issue("a", nil)
	bKey := e.issue("b", nil)["key"].(string)
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": a["key_id"]})
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key": bKey})
	keys := e.mustOK(logical.ListOperation, "keys/", map[string]interface{}{}).Data["keys"]
	assert.Empty(t, keys)
	again := e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key": bKey}).Data
	assert.Equal(t, true, again["already_revoked"])
	// A well-formed key with a bad checksum is rejected before any lookup.
	bad := bKey[:len(bKey)-6] + "000000"
	e.mustFail(logical.UpdateOperation, "revoke", map[string]interface{}{"key": bad}, "checksum")
}

func TestEffectivePermissionsFollowRole(t *testing.T) {
	e := configured(t)
	id := e.issue("k", map[string]interface{}{"workspace": "prod"})["key_id"].(string)
	lk := e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data
	assert.ElementsMatch(t, []interface{}{"clusters:read", "clusters:write"}, lk["permissions"])
	head := e.b.feed.head
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	lk = e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data
	assert.Equal(t, []interface{}{"clusters:read"}, lk["permissions"])
	ch := e.mustOK(logical.ReadOperation, "changes", map[string]interface{}{"after": fmt.Sprint(head)}).Data["changes"].([]interface{})
	require.Len(t, ch, 1)
	assert.Equal(t, wire.OpRoleUpdated, ch[0].(map[string]interface{})["op"])
	assert.Equal(t, "dev", ch[0].(map[string]interface{})["role"])
}

func TestRoleDeleteWithKeys(t *testing.T) {
	e := configured(t)
	id := e.issue("k", nil)["key_id"].(string)
	e.mustFail(logical.DeleteOperation, "roles/dev", nil, "still has 1 live keys")
	e.mustOK(logical.DeleteOperation, "roles/dev", map[string]interface{}{"revoke_keys": true})
	lk := e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data
	assert.Equal(t, wire.StatusRevoked, lk["status"])
	assert.Nil(t, e.mustOK(logical.ReadOperation, "roles/dev", nil))
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
