package backend

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// FuzzCreateKeyFields drives every operator-supplied field of a key create
// through the real request handling: no input may panic or cause anything but
// success or a clean 400, and a rejected create must leave no key behind.
func FuzzCreateKeyFields(f *testing.F) {
	f.Add("ci-deploy", "prod", "CI deploys", "team", "infra", "10.0.0.0/8", "720h", "clusters:read")
	f.Add("", "", "", "", "", "", "", "")
	f.Add("a/../b", "dev-*", "\x00", "k k", "v\nv", "::1/129", "-1h", "*")
	f.Add(strings.Repeat("n", 200), "ü", "é", "ключ", "значение", "300.0.0.1", "99999999999h", "a:b:c")
	f.Add("x", "dev-eu", "d", "k", "v", "2001:db8::/32,127.0.0.1", "0", "clusters:*")
	f.Fuzz(func(t *testing.T, name, ws, desc, mk, mv, cidrs, ttl, perms string) {
		e := configured(t)
		data := map[string]interface{}{"role": "dev", "description": desc, "allowed_cidrs": cidrs, "permissions": perms}
		if ws != "" {
			data["workspace"] = ws
		}
		if ttl != "" {
			data["ttl"] = ttl
		}
		if mk != "" {
			data["metadata"] = map[string]interface{}{mk: mv}
		}
		resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.CreateOperation, Path: "tenants/acme/keys/" + name, Data: data, Storage: e.s,
		})
		if err != nil && !errors.Is(err, logical.ErrInvalidRequest) && !errors.Is(err, logical.ErrUnsupportedPath) && !errors.Is(err, logical.ErrUnsupportedOperation) {
			t.Fatalf("create %q: unexpected error kind: %v", name, err)
		}
		failed := err != nil || resp == nil || resp.IsError()
		keys, lerr := e.s.List(context.Background(), storageNamePrefix)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if failed && len(keys) != 0 {
			t.Fatalf("a rejected create left %v behind", keys)
		}
		if !failed && resp.Data["key"] == nil {
			t.Fatalf("a successful create returned no key")
		}
	})
}

// FuzzRoleFields does the same for role writes.
func FuzzRoleFields(f *testing.F) {
	f.Add("dev", "clusters:read,clusters:write", "prod,dev-*", "10.0.0.0/8", "1h", "2h", "5")
	f.Add("", "", "", "", "", "", "")
	f.Add("r", "*", "[", "::/0", "-1s", "x", "-3")
	f.Fuzz(func(t *testing.T, name, perms, globs, cidrs, ttl, maxTTL, maxKeys string) {
		e := newTestEnv(t)
		data := map[string]interface{}{"permissions": perms, "allowed_workspaces": globs, "allowed_cidrs": cidrs}
		for k, v := range map[string]string{"ttl": ttl, "max_ttl": maxTTL, "max_keys": maxKeys} {
			if v != "" {
				data[k] = v
			}
		}
		_, err := e.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.CreateOperation, Path: "roles/" + name, Data: data, Storage: e.s,
		})
		if err != nil && !errors.Is(err, logical.ErrInvalidRequest) && !errors.Is(err, logical.ErrUnsupportedPath) && !errors.Is(err, logical.ErrUnsupportedOperation) {
			t.Fatalf("role %q: unexpected error kind: %v", name, err)
		}
	})
}

// FuzzChangesParams covers the feed's query parsing.
func FuzzChangesParams(f *testing.F) {
	for _, s := range [][2]string{{"0", "2s"}, {"", ""}, {"-1", "-1s"}, {"18446744073709551615", "5"}, {"x", "1h"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, after, wait string) {
		if d, err := parseWait(wait); err == nil && (d < 0 || d > wire.MaxWait) {
			t.Fatalf("wait %q parsed to %s, outside [0, %s]", wait, d, wire.MaxWait)
		}
		if strings.ContainsAny(wait, "123456789") {
			return // keep fuzzing fast: no real waits
		}
		e := newTestEnv(t)
		_, err := e.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: "changes", Storage: e.s,
			Data: map[string]interface{}{"after": after, "wait": wait},
		})
		if err != nil && !errors.Is(err, logical.ErrInvalidRequest) {
			t.Fatalf("changes after=%q wait=%q: %v", after, wait, err)
		}
	})
}

// FuzzNormalizeCIDRs: accepted entries are canonical and parse again.
func FuzzNormalizeCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3/8", "::1", "2001:db8::/32", "1.2.3.4", "", " ", "a/b", "0.0.0.0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := normalizeCIDRs(strings.Split(s, ","))
		if err != nil {
			return
		}
		again, err := normalizeCIDRs(out)
		if err != nil || strings.Join(again, ",") != strings.Join(out, ",") {
			t.Fatalf("normalized %v does not round-trip: %v %v", out, again, err)
		}
	})
}

// FuzzTenantPaths drives the tenant segment, tenant settings, named
// allow-lists and a key naming them: no panic, only success or a clean 4xx,
// and a rejected create leaves no key behind.
func FuzzTenantPaths(f *testing.F) {
	f.Add("acme", "office", "10.0.0.0/8", "5", "office")
	f.Add("", "", "", "", "")
	f.Add("a/b", "..", "::1/129", "-1", "office,office")
	f.Add(strings.Repeat("t", 200), "ключ", "300.0.0.1/8", "x", strings.Repeat("l,", 40))
	f.Add("acme-x", "vpn", "2001:db8::/32", "0", "ghost")
	f.Fuzz(func(t *testing.T, tenant, list, cidrs, maxKeys, names string) {
		e := configured(t)
		ok := func(what string, err error) {
			if err != nil && !errors.Is(err, logical.ErrInvalidRequest) && !errors.Is(err, logical.ErrUnsupportedPath) && !errors.Is(err, logical.ErrUnsupportedOperation) {
				t.Fatalf("%s: unexpected error kind: %v", what, err)
			}
		}
		do := func(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
			return e.b.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: e.s})
		}
		_, err := do(logical.UpdateOperation, "tenants/"+tenant, map[string]interface{}{"max_keys": maxKeys, "allowed_cidrs": cidrs})
		ok("tenant write", err)
		_, err = do(logical.UpdateOperation, "tenants/"+tenant+"/allowlists/"+list, map[string]interface{}{"cidrs": cidrs})
		ok("allow-list write", err)
		resp, err := do(logical.CreateOperation, "tenants/"+tenant+"/keys/k", map[string]interface{}{"role": "dev", "allowlists": names})
		ok("create", err)
		failed := err != nil || resp == nil || resp.IsError()
		keys, lerr := logical.CollectKeysWithPrefix(context.Background(), e.s, storageNamePrefix)
		if lerr != nil {
			t.Fatal(lerr)
		}
		if failed && len(keys) != 0 {
			t.Fatalf("a rejected create left %v behind", keys)
		}
		for _, path := range []string{"tenants/" + tenant, "tenants/" + tenant + "/allowlists/", "tenants/" + tenant + "/keys/", "keys/"} {
			var op logical.Operation = logical.ListOperation
			if !strings.HasSuffix(path, "/") {
				op = logical.ReadOperation
			}
			_, err := do(op, path, map[string]interface{}{"tenant": tenant, "after": list})
			ok(path, err)
		}
	})
}
