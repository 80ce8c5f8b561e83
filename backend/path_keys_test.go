package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestTTLRules(t *testing.T) {
	e := configured(t)
	e.mustOK(logical.CreateOperation, "roles/forever", map[string]interface{}{"permissions": "*"})
	e.mustOK(logical.CreateOperation, "roles/short", map[string]interface{}{"permissions": "*", "ttl": "1h", "max_ttl": "2h"})
	assert.Equal(t, "", e.issue("a", map[string]interface{}{"role": "forever", "ttl": "0"})["expires_at"], "never expires where allowed")
	assert.Equal(t, "", e.issue("b", map[string]interface{}{"role": "forever"})["expires_at"])
	exp := e.issue("c", map[string]interface{}{"role": "short"})["expires_at"].(string)
	at, err := time.Parse(time.RFC3339, exp)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), at, time.Minute, "role ttl is the default")
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/d", map[string]interface{}{"role": "short", "ttl": "3h"}, "exceeds")
	// A mount max_ttl caps roles without one.
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"max_ttl": "10h"})
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/e", map[string]interface{}{"role": "forever", "ttl": "0"}, "never expires")
}

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

	read := e.mustOK(logical.ReadOperation, "tenants/acme/keys/ci-deploy", nil).Data
	assert.NotContains(t, read, "key")
	assert.Equal(t, "prod", read["workspace"])
	assert.Equal(t, "developer"+"", "developer") // role name is dev here
	assert.Equal(t, "dev", read["role"])
	assert.Equal(t, map[string]string{"team": "infra"}, read["metadata"])
	assert.NotContains(t, fmt.Sprint(read), tok.Secret)

	list := e.mustOK(logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{}).Data
	assert.Equal(t, []string{"ci-deploy"}, list["keys"])
	info := list["key_info"].(map[string]interface{})["ci-deploy"].(map[string]interface{})
	assert.Equal(t, tok.KeyID, info["key_id"])

	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/ci-deploy", nil)
	resp := e.mustOK(logical.ReadOperation, "tenants/acme/keys/ci-deploy", nil)
	assert.Nil(t, resp, "name is free after revoke")
	lk := e.mustOK(logical.ReadOperation, "lookup/"+tok.KeyID, nil).Data
	assert.Equal(t, wire.StatusRevoked, lk["status"])
	// The name can be issued again.
	again := e.issue("ci-deploy", map[string]interface{}{"workspace": "prod"})
	assert.NotEqual(t, tok.KeyID, again["key_id"])
}

func TestNoSecretInStorage(t *testing.T) {
	e := configured(t)
	var secrets []string
	for i := 0; i < 20; i++ {
		data := e.issue(fmt.Sprintf("k%d", i), map[string]interface{}{"workspace": "prod"})
		tok, _ := token.Parse(data["key"].(string))
		secrets = append(secrets, data["key"].(string), tok.Secret)
	}
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/k3", nil)
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
		{"overlong name", logical.CreateOperation, "tenants/acme/keys/" + long, map[string]interface{}{"role": "dev"}, "limit is 128"},
		{"odd name", logical.CreateOperation, "tenants/acme/keys/-bad", map[string]interface{}{"role": "dev"}, "invalid"},
		{"dot name", logical.CreateOperation, "tenants/acme/keys/..", map[string]interface{}{"role": "dev"}, "invalid"},
		{"space name", logical.CreateOperation, "tenants/acme/keys/a b", map[string]interface{}{"role": "dev"}, "invalid"},
		{"unicode name", logical.CreateOperation, "tenants/acme/keys/ключ", map[string]interface{}{"role": "dev"}, "invalid"},
		{"control name", logical.CreateOperation, "tenants/acme/keys/a\x00b", map[string]interface{}{"role": "dev"}, "invalid"},
		{"missing role", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{}, "role is required"},
		{"unknown role", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "nope"}, "unknown role"},
		{"workspace not allowed", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "workspace": "staging"}, "not allowed by role"},
		{"bad workspace", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "workspace": "dev-/x"}, "invalid"},
		{"ttl over max", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "ttl": "99999h"}, "exceeds the max_ttl"},
		{"negative ttl", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "ttl": "-1h"}, "negative"},
		{"never-expire under max_ttl", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "ttl": "0"}, "never expires"},
		{"malformed cidr", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "allowed_cidrs": "10.0.0.0/33"}, "not a cidr"},
		{"junk cidr", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "allowed_cidrs": "hello"}, "not a cidr"},
		{"metadata key", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "metadata": map[string]interface{}{"bad key": "v"}}, "metadata key"},
		{"metadata value control", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "metadata": map[string]interface{}{"k": "a\nb"}}, "control"},
		{"metadata too long", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "metadata": map[string]interface{}{"k": strings.Repeat("v", 600)}}, "limit"},
		{"oversized description", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "description": strings.Repeat("d", 2000)}, "limit is 1024"},
		{"bad permission", logical.CreateOperation, "tenants/acme/keys/x", map[string]interface{}{"role": "dev", "permissions": "drop table"}, "permission"},
		{"duplicate create", logical.CreateOperation, "tenants/acme/keys/taken", map[string]interface{}{"role": "dev", "workspace": "prod"}, "already exists"},
		{"update existing", logical.UpdateOperation, "tenants/acme/keys/taken", map[string]interface{}{"role": "dev"}, "already exists"},
		{"delete unknown", logical.DeleteOperation, "tenants/acme/keys/ghost", nil, "no live key"},
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
		{"list bad limit", logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{"limit": 0}, "limit"},
		{"list bad status", logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{"status": "weird"}, "status filter"},
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
		keys, _ := e.mustOK(logical.ListOperation, "tenants/acme/keys/", data).Data["keys"].([]string)
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
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/c", map[string]interface{}{"role": "small"}, "key limit exceeded")
	e.issue("c", nil)
	before := e.snapshot()
	e.mustFail(logical.CreateOperation, "tenants/acme/keys/d", map[string]interface{}{"role": "dev"}, "key limit exceeded")
	assert.Equal(t, before, e.snapshot())
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/a", nil)
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
				Operation: logical.CreateOperation, Path: "tenants/acme/keys/" + name, Storage: e.s,
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
	names, err := e.s.List(context.Background(), storageNamePrefix+"acme/")
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
	e2.mustFail(logical.CreateOperation, "tenants/acme/keys/c", map[string]interface{}{"role": "dev"}, "key limit exceeded")
	keys := e2.mustOK(logical.ListOperation, "tenants/acme/keys/", map[string]interface{}{}).Data["keys"]
	assert.Equal(t, []string{"a", "b"}, keys)
}
