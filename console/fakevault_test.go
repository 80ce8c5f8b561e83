package console

// fakeVault implements just the Vault endpoints the console calls, with
// Vault's JSON envelopes and statuses ({"data":…}, {"auth":…}, {"errors":[…]};
// 403 permission denied, 400 bad request, 404 missing), and confines tenant
// paths to the token's entity tenant the way the templated policy
// apikeys/tenants/{{identity.entity.metadata.tenant}}/* does.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-apikeys/vault-apikeys/token"
)

type fakeUser struct{ password, entityID string }

type fakeEntity struct{ name, tenant string }

type fakeVault struct {
	mu         sync.Mutex
	users      map[string]fakeUser
	entities   map[string]fakeEntity
	tokens     map[string]string // Vault token → entity id
	revoked    []string          // tokens revoked through revoke-self
	roles      []string
	allowlists map[string][]string // tenant → names
	keys       map[string]map[string]*Key
	maxKeys    int
	// unconfirmedRevoke makes DELETE of a key answer 200 without revoked=true
	// and revoke nothing, as an engine that did not revoke might.
	unconfirmedRevoke bool
	seq               int
	caller            Creator  // who is calling (set per request)
	calls             []string // "<entity> METHOD path?query" of every request, for assertions
	now               func() time.Time
	srv               *httptest.Server
}

func newFakeVault(t testing.TB) *fakeVault {
	f := &fakeVault{
		users: map[string]fakeUser{
			"alice": {"alice-pw", "ent-alice"}, "bob": {"bob-pw", "ent-bob"}, "nobody": {"nobody-pw", "ent-nobody"},
		},
		entities: map[string]fakeEntity{
			"ent-alice": {"alice", "acme"}, "ent-bob": {"bob", "globex"}, "ent-nobody": {"nobody", ""},
		},
		tokens:     map[string]string{},
		roles:      []string{"admin", "developer", "readonly"},
		allowlists: map[string][]string{"acme": {"office", "vpn"}},
		keys:       map[string]map[string]*Key{},
		maxKeys:    5,
		now:        time.Now,
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func vaultErr(w http.ResponseWriter, status int, msgs ...string) {
	if msgs == nil {
		msgs = []string{}
	}
	writeJSON(w, status, map[string]any{"errors": msgs})
}

func permissionDenied(w http.ResponseWriter) {
	vaultErr(w, http.StatusForbidden, "1 error occurred:\n\t* permission denied\n\n")
}

func data(w http.ResponseWriter, d any) { writeJSON(w, http.StatusOK, map[string]any{"data": d}) }

// tokenCount answers how many live tokens the fake holds.
func (f *fakeVault) tokenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tokens)
}

func (f *fakeVault) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// use records usage of a tenant's key, as verifiers would report it.
func (f *fakeVault) use(tenant, name string, at time.Time, from string, count uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.keys[tenant][name]
	k.LastUsedAt, k.LastUsedFrom, k.UseCount = at.UTC().Format(time.RFC3339), from, count
}

func (f *fakeVault) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	f.calls = append(f.calls, f.tokens[r.Header.Get("X-Vault-Token")]+" "+r.Method+" "+path+"?"+r.URL.RawQuery)
	if r.Method == "LIST" {
		r.Method = http.MethodGet
		q := r.URL.Query()
		q.Set("list", "true")
		r.URL.RawQuery = q.Encode()
	}
	var body map[string]any
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&body)
	}
	str := func(k string) string { s, _ := body[k].(string); return s }

	if user, ok := strings.CutPrefix(path, "auth/userpass/login/"); ok && r.Method == http.MethodPost {
		u, ok := f.users[user]
		if !ok || str("password") != u.password {
			vaultErr(w, http.StatusBadRequest, "invalid username or password")
			return
		}
		tok := "hvs." + randomID()
		f.tokens[tok] = u.entityID
		writeJSON(w, http.StatusOK, map[string]any{"auth": map[string]any{
			"client_token": tok, "entity_id": u.entityID, "lease_duration": 3600, "policies": []string{"tenant-admin"}}})
		return
	}
	tok := r.Header.Get("X-Vault-Token")
	entityID, ok := f.tokens[tok]
	if !ok {
		permissionDenied(w)
		return
	}
	ent := f.entities[entityID]
	switch {
	case path == "auth/token/lookup-self" && r.Method == http.MethodGet:
		data(w, map[string]any{"entity_id": entityID, "display_name": "userpass-" + ent.name, "ttl": 3600, "policies": []string{"tenant-admin"}})
	case path == "auth/token/revoke-self" && r.Method == http.MethodPost:
		delete(f.tokens, tok)
		f.revoked = append(f.revoked, tok)
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(path, "identity/entity/id/") && r.Method == http.MethodGet:
		if strings.TrimPrefix(path, "identity/entity/id/") != entityID {
			permissionDenied(w)
			return
		}
		md := map[string]string{}
		if ent.tenant != "" {
			md["tenant"] = ent.tenant
		}
		data(w, map[string]any{"id": entityID, "name": ent.name, "metadata": md})
	case path == "apikeys/roles" && r.URL.Query().Get("list") == "true":
		data(w, map[string]any{"keys": f.roles})
	case strings.HasPrefix(path, "apikeys/tenants/"):
		rest := strings.Split(strings.TrimPrefix(path, "apikeys/tenants/"), "/")
		if ent.tenant == "" || rest[0] != ent.tenant {
			permissionDenied(w)
			return
		}
		f.caller = Creator{EntityID: entityID, DisplayName: "userpass-" + ent.name}
		f.tenant(w, r, rest[0], rest[1:], body, str)
	default:
		permissionDenied(w)
	}
}

func (f *fakeVault) tenant(w http.ResponseWriter, r *http.Request, tenant string, rest []string, body map[string]any, str func(string) string) {
	keys := f.keys[tenant]
	if keys == nil {
		keys = map[string]*Key{}
		f.keys[tenant] = keys
	}
	list := r.URL.Query().Get("list") == "true"
	switch {
	case len(rest) == 1 && rest[0] == "keys" && list && r.Method == http.MethodGet:
		f.listKeys(w, r, keys)
	case len(rest) == 1 && rest[0] == "allowlists" && list:
		if names := f.allowlists[tenant]; len(names) > 0 {
			data(w, map[string]any{"keys": names})
			return
		}
		vaultErr(w, http.StatusNotFound)
	case len(rest) == 2 && rest[0] == "keys" && r.Method == http.MethodGet:
		k := keys[rest[1]]
		if k == nil {
			vaultErr(w, http.StatusNotFound)
			return
		}
		out := *k
		if out.PreviousKeys == nil {
			out.PreviousKeys = []PreviousKey{}
		}
		data(w, out)
	case len(rest) == 2 && rest[0] == "keys" && r.Method == http.MethodPost:
		f.create(w, tenant, rest[1], keys, body, str)
	case len(rest) == 2 && rest[0] == "keys" && r.Method == http.MethodDelete:
		if keys[rest[1]] == nil {
			vaultErr(w, http.StatusBadRequest, fmt.Sprintf("no live key named %q: nothing was revoked", rest[1]))
			return
		}
		if f.unconfirmedRevoke {
			data(w, map[string]any{"seq": f.seq})
			return
		}
		k := keys[rest[1]]
		delete(keys, rest[1])
		f.seq++
		data(w, map[string]any{"revoked": true, "key_id": k.KeyID, "name": k.Name, "status": "revoked", "seq": f.seq,
			"last_used_at": k.LastUsedAt, "last_used_from": k.LastUsedFrom, "use_count": k.UseCount})
	case len(rest) == 3 && rest[0] == "keys" && r.Method == http.MethodPost:
		k := keys[rest[1]]
		if k == nil {
			vaultErr(w, http.StatusBadRequest, fmt.Sprintf("no live key named %q", rest[1]))
			return
		}
		f.seq++
		switch rest[2] {
		case "disable":
			k.Status = "disabled"
		case "enable":
			k.Status = "active"
		case "rotate":
			grace, err := time.ParseDuration(str("grace"))
			if err != nil || grace > 7*24*time.Hour {
				vaultErr(w, http.StatusBadRequest, "grace must be a duration of at most 168h")
				return
			}
			if grace > 0 {
				k.PreviousKeys = append(k.PreviousKeys, PreviousKey{KeyID: k.KeyID, Status: k.Status,
					GraceUntil: f.now().Add(grace).UTC().Format(time.RFC3339), ExpiresAt: k.ExpiresAt})
			}
			tok, _ := token.Generate("vak")
			k.KeyID = tok.KeyID
			data(w, map[string]any{"key": tok.String(), "name": k.Name, "key_id": k.KeyID, "role": k.Role,
				"status": k.Status, "expires_at": k.ExpiresAt, "seq": f.seq})
			return
		default:
			vaultErr(w, http.StatusNotFound, "unsupported path")
			return
		}
		data(w, map[string]any{"name": k.Name, "key_id": k.KeyID, "status": k.Status, "seq": f.seq})
	case len(rest) == 1 && rest[0] == "revoke" && r.Method == http.MethodPost:
		for _, k := range keys {
			for i, p := range k.PreviousKeys {
				if p.KeyID == str("key_id") {
					k.PreviousKeys = slices.Delete(k.PreviousKeys, i, i+1)
					f.seq++
					data(w, map[string]any{"revoked": true, "key_id": p.KeyID, "name": k.Name, "status": "revoked", "seq": f.seq})
					return
				}
			}
		}
		vaultErr(w, http.StatusBadRequest, "no such key here")
	case len(rest) == 2 && rest[0] == "report" && r.Method == http.MethodGet:
		f.report(w, rest[1], keys)
	default:
		vaultErr(w, http.StatusNotFound, "unsupported path")
	}
}

func (f *fakeVault) listKeys(w http.ResponseWriter, r *http.Request, keys map[string]*Key) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 10000 {
		vaultErr(w, http.StatusBadRequest, "limit must be between 1 and 10000")
		return
	}
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	var page []string
	info := map[string]any{}
	next := ""
	for _, n := range names {
		k := keys[n]
		if n <= q.Get("after") || (q.Get("status") != "" && k.Status != q.Get("status")) {
			continue
		}
		if len(page) == limit {
			next = page[len(page)-1]
			break
		}
		page = append(page, n)
		info[n] = map[string]any{"key_id": k.KeyID, "role": k.Role, "workspace": k.Workspace, "status": k.Status,
			"created_at": k.CreatedAt, "created_by": k.CreatedBy, "expires_at": k.ExpiresAt,
			"last_used_at": k.LastUsedAt, "last_used_from": k.LastUsedFrom, "use_count": k.UseCount}
	}
	if len(page) == 0 {
		vaultErr(w, http.StatusNotFound)
		return
	}
	data(w, map[string]any{"keys": page, "key_info": info, "next": next})
}

func (f *fakeVault) create(w http.ResponseWriter, tenant, name string, keys map[string]*Key, body map[string]any, str func(string) string) {
	switch {
	case keys[name] != nil:
		vaultErr(w, http.StatusBadRequest, fmt.Sprintf("key %q already exists: revoke it first or choose another name", name))
		return
	case !slices.Contains(f.roles, str("role")):
		vaultErr(w, http.StatusBadRequest, fmt.Sprintf("unknown role %q", str("role")))
		return
	case len(keys) >= f.maxKeys:
		vaultErr(w, http.StatusBadRequest, fmt.Sprintf("key limit exceeded: tenant %q has %d keys (max_keys %d)", tenant, len(keys), f.maxKeys))
		return
	}
	var cidrs, lists []string
	for _, c := range asStrings(body["allowed_cidrs"]) {
		if _, err := netip.ParsePrefix(c); err != nil {
			vaultErr(w, http.StatusBadRequest, fmt.Sprintf("invalid CIDR %q", c))
			return
		}
		cidrs = append(cidrs, c)
	}
	for _, l := range asStrings(body["allowlists"]) {
		if !slices.Contains(f.allowlists[tenant], l) {
			vaultErr(w, http.StatusBadRequest, fmt.Sprintf("unknown allow-list %q", l))
			return
		}
		lists = append(lists, l)
	}
	now := f.now().UTC()
	expires := ""
	if ttl := str("ttl"); ttl != "0" {
		d, err := time.ParseDuration(ttl)
		if ttl == "" {
			d, err = 720*time.Hour, nil
		}
		if err != nil {
			vaultErr(w, http.StatusBadRequest, "invalid ttl")
			return
		}
		expires = now.Add(d).Format(time.RFC3339)
	}
	tok, _ := token.Generate("vak")
	k := &Key{Name: name, Tenant: tenant, KeyID: tok.KeyID, Role: str("role"), Workspace: str("workspace"),
		Permissions: []string{"clusters:read"}, AllowedCIDRs: cidrs, Allowlists: lists, Description: str("description"),
		Status: "active", CreatedAt: now.Format(time.RFC3339), CreatedBy: f.caller,
		ExpiresAt: expires, Metadata: map[string]string{}}
	if k.AllowedCIDRs == nil {
		k.AllowedCIDRs = []string{}
	}
	keys[name] = k
	f.seq++
	out := map[string]any{"key": tok.String(), "seq": f.seq}
	raw, _ := json.Marshal(k)
	_ = json.Unmarshal(raw, &out)
	data(w, out)
}

func asStrings(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func (f *fakeVault) report(w http.ResponseWriter, kind string, keys map[string]*Key) {
	names := []string{}
	info := map[string]any{}
	now := f.now()
	for n, k := range keys {
		switch kind {
		case "expiring":
			exp, err := time.Parse(time.RFC3339, k.ExpiresAt)
			if err != nil || k.Status != "active" || exp.After(now.Add(720*time.Hour)) {
				continue
			}
			info[n] = map[string]any{"key_id": k.KeyID, "role": k.Role, "expires_at": k.ExpiresAt, "expires_in": exp.Sub(now).String()}
		case "stale":
			if k.LastUsedAt != "" {
				last, _ := time.Parse(time.RFC3339, k.LastUsedAt)
				if last.After(now.Add(-2160 * time.Hour)) {
					continue
				}
			} else if created, _ := time.Parse(time.RFC3339, k.CreatedAt); created.After(now.Add(-2160 * time.Hour)) {
				continue
			}
			info[n] = map[string]any{"key_id": k.KeyID, "role": k.Role, "status": k.Status, "created_at": k.CreatedAt, "last_used_at": k.LastUsedAt}
		default:
			vaultErr(w, http.StatusNotFound, "unsupported path")
			return
		}
		names = append(names, n)
	}
	sort.Strings(names)
	data(w, map[string]any{"keys": names, "key_info": info, "next": ""})
}
