package backend_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/plugin"
	"github.com/vault-apikeys/vault-apikeys/token"
)

// cli runs the vault CLI and fails the test on error.
func cli(t *testing.T, v *vaulttest.Vault, args ...string) string {
	t.Helper()
	out, err := v.CLI(t, args...)
	require.NoError(t, err, "vault %s:\n%s", strings.Join(args, " "), out)
	return out
}

func cliJSON(t *testing.T, v *vaulttest.Vault, args ...string) map[string]interface{} {
	t.Helper()
	out := cli(t, v, append([]string{args[0], "-format=json"}, args[1:]...)...)
	var m map[string]interface{}
	require.NoError(t, json.Unmarshal([]byte(out), &m), out)
	return m
}

// tidy starts a tidy run with the CLI (`vault write -f apikeys/tidy`) and
// waits, bounded, until `read apikeys/tidy` shows that run finished; it returns
// the run's fields. A run already going (the periodic job) is waited out first.
func tidy(t *testing.T, v *vaulttest.Vault) map[string]interface{} {
	t.Helper()
	var run interface{}
	var last map[string]interface{}
	require.Eventually(t, func() bool {
		if run == nil {
			if d := cliJSON(t, v, "write", "-f", "apikeys/tidy")["data"].(map[string]interface{}); d["started"] == true {
				run = d["run"]
			}
			return false
		}
		sec, err := v.Client.Logical().Read("apikeys/tidy")
		require.NoError(t, err)
		raw, err := json.Marshal(sec.Data) // numbers as the CLI's JSON gives them
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, &last))
		return fmt.Sprint(last["run"]) == fmt.Sprint(run)
	}, 30*time.Second, 50*time.Millisecond, "tidy run did not finish")
	require.Nil(t, last["error"], "tidy run failed")
	return last
}

// TestIntegrationReadmeFlowThroughCLI is the README's walk-through on a real Vault.
func TestIntegrationReadmeFlowThroughCLI(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/developer", "permissions=clusters:read,clusters:write", "allowed_workspaces=*", "max_ttl=2160h")
	created := cliJSON(t, v, "write", "apikeys/tenants/acme/keys/ci-deploy", "role=developer", "workspace=prod", "description=CI deploys", "ttl=720h")
	data := created["data"].(map[string]interface{})
	key := data["key"].(string)
	tok, err := token.Parse(key)
	require.NoError(t, err)
	assert.Regexp(t, `^vak_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}$`, key)

	list := cli(t, v, "list", "apikeys/tenants/acme/keys")
	assert.Contains(t, list, "ci-deploy")
	read := cli(t, v, "read", "apikeys/tenants/acme/keys/ci-deploy")
	assert.Contains(t, read, tok.KeyID)
	assert.Contains(t, read, "prod")
	assert.NotContains(t, read, tok.Secret)
	assert.NotContains(t, read, key)

	cli(t, v, "delete", "apikeys/tenants/acme/keys/ci-deploy")
	lk := cliJSON(t, v, "read", "apikeys/lookup/"+tok.KeyID)["data"].(map[string]interface{})
	assert.Equal(t, "revoked", lk["status"])
	_, err = v.CLI(t, "read", "-field=key_id", "apikeys/tenants/acme/keys/ci-deploy")
	assert.Error(t, err, "the name is gone after revoke")

	changes := cliJSON(t, v, "read", "apikeys/changes", "after=0")["data"].(map[string]interface{})
	ops := []string{}
	for _, c := range changes["changes"].([]interface{}) {
		ops = append(ops, c.(map[string]interface{})["op"].(string))
	}
	assert.Equal(t, []string{"role-updated", "created", "revoked"}, ops)

	help := cli(t, v, "path-help", "apikeys/tenants/acme/keys/x")
	assert.Contains(t, help, "workspace")
	assert.Contains(t, help, "allowed_cidrs")
	assert.NotContains(t, v.Log(), tok.Secret)

	var mounts map[string]interface{}
	require.NoError(t, json.Unmarshal([]byte(cli(t, v, "secrets", "list", "-detailed", "-format=json")), &mounts))
	mount := mounts["apikeys/"].(map[string]interface{})
	assert.Equal(t, plugin.Version, mount["running_plugin_version"], "the plugin reports its own version")
}

// mountStorage returns the apikeys mount's raw storage: what bad input must not change.
func mountStorage(t *testing.T, v *vaulttest.Vault, mount string) string {
	t.Helper()
	m, err := v.Client.Sys().GetMount(mount)
	require.NoError(t, err)
	var out []string
	for _, line := range strings.Split(v.RawStorage(t), "\n") {
		if strings.HasPrefix(line, "logical/"+m.UUID+"/") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

type apiCase struct {
	name, method, path string
	body               map[string]interface{}
	want               string
}

// call sends a raw HTTP request as root and returns the status and error text.
func call(t *testing.T, v *vaulttest.Vault, c apiCase) (int, string) {
	t.Helper()
	var body io.Reader
	if c.body != nil {
		raw, err := json.Marshal(c.body)
		require.NoError(t, err)
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(c.method, v.Addr+"/v1/"+c.path, body)
	require.NoError(t, err)
	req.Header.Set("X-Vault-Token", v.RootToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Errors []string `json:"errors"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, strings.Join(out.Errors, "; ")
}

func TestIntegrationBadInput(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/developer", "permissions=clusters:read", "allowed_workspaces=prod,dev-*", "max_ttl=2160h")
	cli(t, v, "write", "apikeys/tenants/acme/keys/taken", "role=developer", "workspace=prod")
	require.NoError(t, v.Client.Sys().Mount("unconfigured", &api.MountInput{Type: "vault-plugin-secrets-apikeys"}))
	long := strings.Repeat("n", 300)
	role := map[string]interface{}{"role": "developer", "workspace": "prod"}
	with := func(k string, val interface{}) map[string]interface{} {
		m := map[string]interface{}{"role": "developer", "workspace": "prod"}
		m[k] = val
		return m
	}
	cases := []apiCase{
		{"empty name", "POST", "apikeys/tenants/acme/keys/", role, ""},
		{"overlong name", "POST", "apikeys/tenants/acme/keys/" + long, role, "limit is 128"},
		{"odd name", "POST", "apikeys/tenants/acme/keys/-x-", role, "invalid"},
		{"percent name", "POST", "apikeys/tenants/acme/keys/a%25b", role, "invalid"},
		{"unicode name", "POST", "apikeys/tenants/acme/keys/%D0%BA%D0%BB", role, "invalid"},
		{"path trick", "POST", "apikeys/tenants/acme/keys/..%2Fconfig", role, ""},
		{"dotdot name", "POST", "apikeys/tenants/acme/keys/..", role, ""},
		{"missing role", "POST", "apikeys/tenants/acme/keys/x", map[string]interface{}{"workspace": "prod"}, "role is required"},
		{"unknown role", "POST", "apikeys/tenants/acme/keys/x", map[string]interface{}{"role": "nope"}, "unknown role"},
		{"workspace outside role", "POST", "apikeys/tenants/acme/keys/x", with("workspace", "staging"), "not allowed by role"},
		{"ttl over max", "POST", "apikeys/tenants/acme/keys/x", with("ttl", "99999h"), "exceeds the max_ttl"},
		{"negative ttl", "POST", "apikeys/tenants/acme/keys/x", with("ttl", "-5m"), ""},
		{"never expire under max", "POST", "apikeys/tenants/acme/keys/x", with("ttl", "0"), "never expires"},
		{"ttl junk", "POST", "apikeys/tenants/acme/keys/x", with("ttl", "soon"), ""},
		{"malformed cidr", "POST", "apikeys/tenants/acme/keys/x", with("allowed_cidrs", "10.0.0.0/99"), "not a cidr"},
		{"malformed metadata", "POST", "apikeys/tenants/acme/keys/x", with("metadata", "notkv"), ""},
		{"metadata control", "POST", "apikeys/tenants/acme/keys/x", with("metadata", map[string]interface{}{"k": "a\x01"}), "control"},
		{"oversized description", "POST", "apikeys/tenants/acme/keys/x", with("description", strings.Repeat("d", 5000)), "limit is 1024"},
		{"bad permission", "POST", "apikeys/tenants/acme/keys/x", with("permissions", "rm -rf"), "permission"},
		{"duplicate create", "POST", "apikeys/tenants/acme/keys/taken", role, "already exists"},
		{"delete unknown", "DELETE", "apikeys/tenants/acme/keys/ghost", nil, "no live key"},
		{"revoke unknown id", "POST", "apikeys/revoke", map[string]interface{}{"key_id": "AAAAAAAAAAAAAAAA"}, "no key with key_id"},
		{"revoke bad checksum", "POST", "apikeys/revoke", map[string]interface{}{"key": "vak_AAAAAAAAAAAAAAAA_" + strings.Repeat("A", 49)}, "checksum"},
		{"lookup junk", "GET", "apikeys/lookup/xyz", nil, "not a key_id"},
		{"batch too big", "POST", "apikeys/lookup", map[string]interface{}{"key_ids": strings.Repeat("AAAAAAAAAAAAAAAA,", 100) + "AAAAAAAAAAAAAAAA"}, "1 to 100"},
		{"changes bad after", "GET", "apikeys/changes?after=x", nil, "sequence number"},
		{"role no permissions", "POST", "apikeys/roles/r", map[string]interface{}{"allowed_workspaces": "*"}, "permissions must not be empty"},
		{"role bad cidr", "POST", "apikeys/roles/r", map[string]interface{}{"permissions": "a:b", "allowed_cidrs": "300.1.1.1/8"}, "not a cidr"},
		{"role delete with keys", "DELETE", "apikeys/roles/developer", nil, "still has 1 live keys"},
		{"missing config", "POST", "unconfigured/tenants/acme/keys/x", role, "not configured"},
		{"bad tenant name", "POST", "apikeys/tenants/-x-/keys/x", role, "invalid"},
		{"unknown allow-list", "POST", "apikeys/tenants/acme/keys/x", with("allowlists", "nope"), "no allow-list"},
		{"allow-list without cidrs", "POST", "apikeys/tenants/acme/allowlists/empty", map[string]interface{}{"description": "x"}, "cidrs is required"},
		{"allow-list bad cidr", "POST", "apikeys/tenants/acme/allowlists/bad", map[string]interface{}{"cidrs": "10.0.0.0/99"}, "not a cidr"},
		{"allow-list delete unknown", "DELETE", "apikeys/tenants/acme/allowlists/ghost", nil, "no allow-list"},
		{"tenant write without settings", "POST", "apikeys/tenants/acme", role, "nothing to set"},
		{"tenant negative quota", "POST", "apikeys/tenants/acme", map[string]interface{}{"max_keys": -1}, "max_keys"},
		{"tenant delete with keys", "DELETE", "apikeys/tenants/acme", nil, "still has 1 live keys"},
		{"disable by unknown key_id", "POST", "apikeys/tenants/acme/disable", map[string]interface{}{"key_id": "AAAAAAAAAAAAAAAA"}, "no live key"},
		{"transit key missing", "POST", "unconfigured/config", map[string]interface{}{"vault_addr": v.Addr, "token": v.RootToken, "transit_key": "nope"}, "transit"},
		{"transit mount missing", "POST", "unconfigured/config", map[string]interface{}{"vault_addr": v.Addr, "token": v.RootToken, "transit_mount": "nowhere"}, "transit"},
		{"token lacks permission", "POST", "unconfigured/config", map[string]interface{}{"vault_addr": v.Addr, "token": v.Token(t, `path "sys/*" { capabilities = ["read"] }`)}, "permission denied"},
		{"config bad prefix", "POST", "apikeys/config", map[string]interface{}{"prefix": "X"}, "prefix"},
	}
	require.GreaterOrEqual(t, len(cases), 30)
	before, beforeUnconf := mountStorage(t, v, "apikeys"), mountStorage(t, v, "unconfigured")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, msg := call(t, v, c)
			assert.True(t, status >= 400 && status < 500, "want 4xx, got %d (%s)", status, msg)
			assert.Contains(t, strings.ToLower(msg), strings.ToLower(c.want))
		})
	}
	assert.Equal(t, before, mountStorage(t, v, "apikeys"), "bad input changed the mount's storage")
	assert.Equal(t, beforeUnconf, mountStorage(t, v, "unconfigured"))
	keys, err := v.Client.Logical().List("apikeys/tenants/acme/keys")
	require.NoError(t, err)
	assert.Equal(t, []interface{}{"taken"}, keys.Data["keys"])
}

func TestIntegrationNoPlaintextInRawStorage(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/r", "permissions=*")
	var secrets []string
	for i := 0; i < 10; i++ {
		sec, err := v.Client.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/k%d", i), map[string]interface{}{"role": "r"})
		require.NoError(t, err)
		key := sec.Data["key"].(string)
		tok, _ := token.Parse(key)
		secrets = append(secrets, key, tok.Secret)
	}
	_, err := v.Client.Logical().Delete("apikeys/tenants/acme/keys/k0")
	require.NoError(t, err)
	raw := v.RawStorage(t)
	require.Contains(t, raw, "key/", "raw storage dump must include the records")
	for _, s := range secrets {
		assert.NotContains(t, raw, s)
	}
	for _, s := range secrets {
		assert.NotContains(t, v.Log(), s)
	}
}

func TestIntegrationLongPollAndReset(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/r", "permissions=*")
	type polled struct {
		changes []interface{}
		err     error
	}
	done := make(chan polled, 1)
	go func() {
		sec, err := v.Client.Logical().ReadWithData("apikeys/changes", map[string][]string{"after": {"0"}, "wait": {"5s"}})
		if err != nil {
			done <- polled{err: err}
			return
		}
		done <- polled{changes: sec.Data["changes"].([]interface{})}
	}()
	time.Sleep(300 * time.Millisecond)
	_, err := v.Client.Logical().Write("apikeys/tenants/acme/keys/a", map[string]interface{}{"role": "r"})
	require.NoError(t, err)
	returned := time.Now()
	var p polled
	select {
	case p = <-done:
	case <-time.After(4 * time.Second):
		t.Fatal("long-poll did not return on the change")
	}
	require.NoError(t, p.err)
	require.Len(t, p.changes, 1)
	t.Logf("long-poll returned %s after the create returned", time.Since(returned))

	// Retention: entries older than feed_retention go at tidy; a follower at 0 is reset.
	cli(t, v, "write", "apikeys/config", "feed_retention=1s")
	time.Sleep(1100 * time.Millisecond)
	_, err = v.Client.Logical().Write("apikeys/tenants/acme/keys/b", map[string]interface{}{"role": "r"})
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
	tidy(t, v)
	sec, err := v.Client.Logical().ReadWithData("apikeys/changes", map[string][]string{"after": {"0"}})
	require.NoError(t, err)
	assert.Equal(t, true, sec.Data["reset"])
}

func TestIntegrationConcurrentCreatesRespectLimit(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/config", "max_keys=15")
	cli(t, v, "write", "apikeys/roles/r", "permissions=*", "max_keys=12")
	var ok, limited atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := v.Client.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/c%02d", i), map[string]interface{}{"role": "r"})
			switch {
			case err == nil:
				ok.Add(1)
			case strings.Contains(err.Error(), "key limit exceeded"):
				limited.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}(i)
	}
	wg.Wait()
	assert.EqualValues(t, 12, ok.Load(), "role max_keys bounds concurrent creates")
	assert.EqualValues(t, 20, limited.Load())
	keys, err := v.Client.Logical().List("apikeys/tenants/acme/keys")
	require.NoError(t, err)
	assert.Len(t, keys.Data["keys"], 12)
}

// TestSealWhileRequestsInFlight: seal must not wait on parked polls or on
// issuances that call back into transit for longer than the poll cap.
func TestIntegrationSealWhileRequestsInFlight(t *testing.T) {
	v := vaulttest.Start(t)
	cli(t, v, "write", "apikeys/roles/r", "permissions=*")
	var issued atomic.Int32
	issuers := vaulttest.StartLoad(4, func(w, i int) {
		if _, err := v.Client.Logical().Write(fmt.Sprintf("apikeys/tenants/acme/keys/w%d-%d", w, i), map[string]interface{}{"role": "r"}); err == nil {
			issued.Add(1)
		}
	})
	pollers := vaulttest.StartLoad(2, func(int, int) {
		_, _ = v.Client.Logical().ReadWithData("apikeys/changes", map[string][]string{"after": {"999999"}, "wait": {"5s"}})
	})
	time.Sleep(1500 * time.Millisecond)
	require.Positive(t, issued.Load(), "issuance must be running when seal starts")
	start := time.Now()
	out, err := v.CLI(t, "operator", "seal")
	took := time.Since(start)
	require.NoError(t, err, out)
	t.Logf("seal took %s with %d keys issued", took, issued.Load())
	assert.Less(t, took, 5*time.Second)
	issuers.Stop()
	pollers.Stop()
	st, err := v.Client.Sys().SealStatus()
	require.NoError(t, err)
	assert.True(t, st.Sealed)
}

func TestIntegrationOpenAPIDocumentsFields(t *testing.T) {
	v := vaulttest.Start(t)
	resp, err := v.Get("sys/internal/specs/openapi")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var doc struct {
		Paths      map[string]interface{} `json:"paths"`
		Components interface{}            `json:"components"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&doc))
	for _, p := range []string{"/apikeys/config", "/apikeys/tenants/{tenant}/keys/{name}", "/apikeys/keys/", "/apikeys/tenants/{tenant}", "/apikeys/tenants/{tenant}/allowlists/{name}", "/apikeys/tenants/{tenant}/revoke", "/apikeys/roles/{name}", "/apikeys/changes", "/apikeys/lookup/{key_id}", "/apikeys/revoke", "/apikeys/usage"} {
		assert.Contains(t, doc.Paths, p)
	}
	raw, _ := json.Marshal(doc)
	for _, field := range []string{"Workspace the key is pinned to", "Write-only. Vault token for transit", "Long-poll", "Up to 100 key_ids"} {
		assert.True(t, strings.Contains(string(raw), field), "OpenAPI lacks the description %q", field)
	}
}
