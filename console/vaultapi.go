package console

// Every call the console makes to Vault lives in this file: the auth method's
// login, the token's own lookup and revocation, the person's identity entity,
// and the plugin's tenant admin paths (DESIGN §4). Adapting to a change of the
// plugin's paths or fields is a change here and nowhere else.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxVaultBody bounds what the console reads of one Vault answer.
const maxVaultBody = 4 << 20

// vaultError is a Vault answer other than 2xx. Its messages are kept only to
// classify the error into plain words (see plainError); they are never shown
// or logged, since they may echo input or name internal addresses.
type vaultError struct {
	status   int
	messages []string
}

func (e *vaultError) Error() string { return fmt.Sprintf("vault answered HTTP %d", e.status) }

// errUnavailable wraps a transport failure (Vault down, timeout).
var errUnavailable = errors.New("vault is unreachable")

// vaultAPI talks to one Vault with the signed-in person's token.
type vaultAPI struct {
	addr      string // base address, no trailing slash
	mount     string // the plugin's mount path, e.g. "apikeys"
	authMount string // the auth method's mount path, e.g. "userpass"
	http      *http.Client
}

// do sends one request and decodes the JSON envelope's "data" (or "auth" for
// logins) into out when out is non-nil.
func (v *vaultAPI) do(ctx context.Context, token, method, path string, query url.Values, body any, out any) error {
	u := v.addr + "/v1/" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	req.Header.Set("X-Vault-Request", "true")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.http.Do(req)
	if err != nil {
		// The transport error names the Vault address: keep it out of the chain.
		return errUnavailable
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxVaultBody))
	if err != nil {
		return errUnavailable
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var env struct {
			Errors []string `json:"errors"`
		}
		_ = json.Unmarshal(raw, &env)
		return &vaultError{status: resp.StatusCode, messages: env.Errors}
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// login signs in through the auth method (userpass and LDAP share the shape
// auth/<mount>/login/<username>) and answers the client token.
func (v *vaultAPI) login(ctx context.Context, username, password string) (string, error) {
	var out struct {
		Auth *struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	path := "auth/" + v.authMount + "/login/" + url.PathEscape(username)
	if err := v.do(ctx, "", http.MethodPost, path, nil, map[string]string{"password": password}, &out); err != nil {
		return "", err
	}
	if out.Auth == nil || out.Auth.ClientToken == "" {
		return "", &vaultError{status: http.StatusBadGateway}
	}
	return out.Auth.ClientToken, nil
}

// identity is who a token belongs to.
type identity struct {
	EntityID    string
	DisplayName string
	TTL         time.Duration // 0 = no expiry
	Tenant      string
}

// whoAmI reads the token's entity (auth/token/lookup-self) and that entity's
// tenant metadata (identity/entity/id/<id>), the value the templated policy uses.
func (v *vaultAPI) whoAmI(ctx context.Context, token string) (identity, error) {
	var self struct {
		Data struct {
			EntityID    string `json:"entity_id"`
			DisplayName string `json:"display_name"`
			TTL         int64  `json:"ttl"`
		} `json:"data"`
	}
	if err := v.do(ctx, token, http.MethodGet, "auth/token/lookup-self", nil, nil, &self); err != nil {
		return identity{}, err
	}
	id := identity{EntityID: self.Data.EntityID, DisplayName: self.Data.DisplayName, TTL: time.Duration(self.Data.TTL) * time.Second}
	if id.EntityID == "" {
		return id, nil
	}
	var ent struct {
		Data struct {
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		} `json:"data"`
	}
	if err := v.do(ctx, token, http.MethodGet, "identity/entity/id/"+url.PathEscape(id.EntityID), nil, nil, &ent); err != nil {
		return id, err
	}
	id.Tenant = ent.Data.Metadata["tenant"]
	return id, nil
}

// revokeSelf revokes the token (sign-out, session expiry).
func (v *vaultAPI) revokeSelf(ctx context.Context, token string) error {
	return v.do(ctx, token, http.MethodPost, "auth/token/revoke-self", nil, nil, nil)
}

// list answers the names of a LIST; Vault answers 404 for an empty list.
func (v *vaultAPI) list(ctx context.Context, token, path string, query url.Values, out any) error {
	if query == nil {
		query = url.Values{}
	}
	query.Set("list", "true")
	err := v.do(ctx, token, http.MethodGet, path, query, nil, out)
	var ve *vaultError
	if errors.As(err, &ve) && ve.status == http.StatusNotFound {
		return nil
	}
	return err
}

// roles lists the platform roles (apikeys/roles).
func (v *vaultAPI) roles(ctx context.Context, token string) ([]string, error) {
	var out struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	err := v.list(ctx, token, v.mount+"/roles", nil, &out)
	return out.Data.Keys, err
}

// tenantPath is apikeys/tenants/<tenant>/<rest>, the reach of the templated policy.
func (v *vaultAPI) tenantPath(tenant string, rest ...string) string {
	p := v.mount + "/tenants/" + url.PathEscape(tenant)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// allowlists lists the tenant's named IP allow-lists.
func (v *vaultAPI) allowlists(ctx context.Context, token, tenant string) ([]string, error) {
	var out struct {
		Data struct {
			Keys []string `json:"keys"`
		} `json:"data"`
	}
	err := v.list(ctx, token, v.tenantPath(tenant, "allowlists"), nil, &out)
	return out.Data.Keys, err
}

// Creator is the created_by field of a key.
type Creator struct {
	EntityID    string `json:"entity_id"`
	DisplayName string `json:"display_name"`
}

// Key is one key as read, list and create show it (DESIGN §4).
type Key struct {
	Name         string            `json:"name"`
	Tenant       string            `json:"tenant"`
	KeyID        string            `json:"key_id"`
	Role         string            `json:"role"`
	Workspace    string            `json:"workspace"`
	Permissions  []string          `json:"permissions"`
	AllowedCIDRs []string          `json:"allowed_cidrs"`
	Allowlists   []string          `json:"allowlists"`
	Description  string            `json:"description"`
	Status       string            `json:"status"`
	CreatedAt    string            `json:"created_at"`
	CreatedBy    Creator           `json:"created_by"`
	ExpiresAt    string            `json:"expires_at"`
	LastUsedAt   string            `json:"last_used_at"`
	LastUsedFrom string            `json:"last_used_from"`
	UseCount     uint64            `json:"use_count"`
	Metadata     map[string]string `json:"metadata"`
	PreviousKeys []PreviousKey     `json:"previous_keys"`
	// ExpiresIn is set by the expiring report only.
	ExpiresIn string `json:"expires_in"`
}

// PreviousKey is a rotated-out key still valid during its grace.
type PreviousKey struct {
	KeyID      string `json:"key_id"`
	Status     string `json:"status"`
	GraceUntil string `json:"grace_until"`
	ExpiresAt  string `json:"expires_at"`
}

// Page is one page of a key list or report, in name order.
type Page struct {
	Keys []Key
	Next string // the after= of the next page; empty on the last page
}

// pageOf decodes {"data": {"keys": [...], "key_info": {...}, "next": ...}}.
type pageEnvelope struct {
	Data struct {
		Keys    []string       `json:"keys"`
		KeyInfo map[string]Key `json:"key_info"`
		Next    string         `json:"next"`
	} `json:"data"`
}

func (e pageEnvelope) page() Page {
	p := Page{Next: e.Data.Next}
	for _, name := range e.Data.Keys {
		k := e.Data.KeyInfo[name]
		k.Name = name
		p.Keys = append(p.Keys, k)
	}
	return p
}

// listKeys lists the tenant's keys: LIST tenants/<t>/keys with after, limit, status.
func (v *vaultAPI) listKeys(ctx context.Context, token, tenant, status, after string, limit int) (Page, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if status != "" {
		q.Set("status", status)
	}
	if after != "" {
		q.Set("after", after)
	}
	var env pageEnvelope
	err := v.list(ctx, token, v.tenantPath(tenant, "keys"), q, &env)
	return env.page(), err
}

// report reads report/expiring (within) or report/stale (unused_for).
func (v *vaultAPI) report(ctx context.Context, token, tenant, kind, window string, limit int) (Page, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	switch kind {
	case "expiring":
		q.Set("within", window)
	case "stale":
		q.Set("unused_for", window)
	default:
		return Page{}, fmt.Errorf("unknown report %q", kind)
	}
	var env pageEnvelope
	err := v.do(ctx, token, http.MethodGet, v.tenantPath(tenant, "report", kind), q, nil, &env)
	var ve *vaultError
	if errors.As(err, &ve) && ve.status == http.StatusNotFound {
		err = nil
	}
	return env.page(), err
}

// readKey reads tenants/<t>/keys/<name>; (nil, nil) when there is no such key.
func (v *vaultAPI) readKey(ctx context.Context, token, tenant, name string) (*Key, error) {
	var out struct {
		Data *Key `json:"data"`
	}
	err := v.do(ctx, token, http.MethodGet, v.tenantPath(tenant, "keys", name), nil, nil, &out)
	var ve *vaultError
	if errors.As(err, &ve) && ve.status == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if out.Data == nil {
		return nil, nil
	}
	out.Data.Name = name
	return out.Data, nil
}

// CreateRequest is the create fields of tenants/<t>/keys/<name>.
type CreateRequest struct {
	Role         string   `json:"role"`
	Workspace    string   `json:"workspace,omitempty"`
	Description  string   `json:"description,omitempty"`
	TTL          string   `json:"ttl,omitempty"` // "0" = never expires
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
	Allowlists   []string `json:"allowlists,omitempty"`
}

// issued is a create or rotate answer: the key, once, and the record.
type issued struct {
	Secret string // the plaintext key; shown once, never stored or logged
	Key    Key
}

func (v *vaultAPI) issue(ctx context.Context, token, path string, body any) (issued, error) {
	var out struct {
		Data struct {
			Key
			Secret string `json:"key"`
		} `json:"data"`
	}
	if err := v.do(ctx, token, http.MethodPost, path, nil, body, &out); err != nil {
		return issued{}, err
	}
	if out.Data.Secret == "" {
		return issued{}, &vaultError{status: http.StatusBadGateway}
	}
	return issued{Secret: out.Data.Secret, Key: out.Data.Key}, nil
}

// createKey writes tenants/<t>/keys/<name>; the answer carries the key once.
func (v *vaultAPI) createKey(ctx context.Context, token, tenant, name string, req CreateRequest) (issued, error) {
	out, err := v.issue(ctx, token, v.tenantPath(tenant, "keys", name), req)
	out.Key.Name = name
	return out, err
}

// rotateKey writes tenants/<t>/keys/<name>/rotate with grace; the new key once.
func (v *vaultAPI) rotateKey(ctx context.Context, token, tenant, name, grace string) (issued, error) {
	out, err := v.issue(ctx, token, v.tenantPath(tenant, "keys", name, "rotate"), map[string]string{"grace": grace})
	out.Key.Name = name
	return out, err
}

// setEnabled writes tenants/<t>/keys/<name>/enable or /disable.
func (v *vaultAPI) setEnabled(ctx context.Context, token, tenant, name string, enabled bool) error {
	verb := "disable"
	if enabled {
		verb = "enable"
	}
	return v.do(ctx, token, http.MethodPost, v.tenantPath(tenant, "keys", name, verb), nil, map[string]string{}, nil)
}

// Revoked is a revocation's answer (DESIGN §4, Neon's shape): revoked=true
// and the key's last use.
type Revoked struct {
	Revoked      bool   `json:"revoked"`
	KeyID        string `json:"key_id"`
	LastUsedAt   string `json:"last_used_at"`
	LastUsedFrom string `json:"last_used_from"`
	UseCount     uint64 `json:"use_count"`
}

// revocation sends a revoking request and insists on revoked=true: an answer
// without it is not taken as a revocation (the page must never say "revoked"
// for a key that still works).
func (v *vaultAPI) revocation(ctx context.Context, token, method, path string, body any) (Revoked, error) {
	var out struct {
		Data Revoked `json:"data"`
	}
	if err := v.do(ctx, token, method, path, nil, body, &out); err != nil {
		return Revoked{}, err
	}
	if !out.Data.Revoked {
		return Revoked{}, &vaultError{status: http.StatusBadGateway}
	}
	return out.Data, nil
}

// revokeKey deletes tenants/<t>/keys/<name>: the name's key and any key still
// in rotation grace are revoked at once.
func (v *vaultAPI) revokeKey(ctx context.Context, token, tenant, name string) (Revoked, error) {
	return v.revocation(ctx, token, http.MethodDelete, v.tenantPath(tenant, "keys", name), nil)
}

// revokeKeyID writes tenants/<t>/revoke key_id=<id> (a rotated-out key in grace).
func (v *vaultAPI) revokeKeyID(ctx context.Context, token, tenant, keyID string) error {
	_, err := v.revocation(ctx, token, http.MethodPost, v.tenantPath(tenant, "revoke"), map[string]string{"key_id": keyID})
	return err
}

// plainError says what went wrong in words a tenant admin can act on. It never
// returns Vault's own text, which may echo input or name internal addresses.
func plainError(err error) string {
	var ve *vaultError
	if !errors.As(err, &ve) {
		return "The key service cannot be reached right now. Try again in a moment."
	}
	text := strings.ToLower(strings.Join(ve.messages, " "))
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(text, w) {
				return true
			}
		}
		return false
	}
	// Order matters: the engine's messages name more than one thing (a ttl
	// error names the role, a quota error names the role and the tenant, a
	// name error mentions a length "limit"), so the specific words come first.
	switch {
	case ve.status == http.StatusForbidden:
		return "Permission denied: your account is not allowed to do this. Ask your platform operator if you need it."
	case ve.status == http.StatusNotFound:
		return "That API key no longer exists. It may have been revoked."
	case ve.status == http.StatusTooManyRequests:
		return "Too many requests right now. Wait a moment and try again."
	case ve.status >= 500:
		return "The key service had a problem. Try again in a moment."
	case has("key limit", "quota"):
		return "Quota reached: your organization has as many API keys as it may have. Revoke keys you no longer need, or ask your platform operator to raise the limit."
	case has("already exists"):
		return "Name taken: an API key with this name already exists. Choose another name."
	case has("rotation grace"):
		return "This key already has earlier keys in their grace period. Revoke them first, or rotate with no grace."
	case has("grace"):
		return "The grace period is too long. It can be at most 7 days."
	case has("only an active key"):
		return "Only an active key can be rotated. Enable it first."
	case has("never expires"):
		return "This role does not allow keys that never expire. Choose a number of days."
	case has("ttl", "expir"):
		return "That expiry is longer than the role allows. Choose a shorter expiry."
	case has("workspace"):
		return "That workspace is not allowed for the chosen role. Pick another workspace or leave it empty."
	case has("unknown role", "no such role", "role is required", "no longer exists"):
		return "That role is not available. Pick one of the roles in the list."
	case has("cidr", "allow-list", "allowlist", "address"):
		return "One of the IP ranges or allow-lists is not valid. Use CIDR notation such as 203.0.113.0/24."
	case has("no live key", "no key with", "no such key", "not found"):
		return "That API key no longer exists. It may have been revoked."
	case has("description"):
		return "The description is too long or has characters that are not allowed. Shorten it and try again."
	case has("name"):
		return "That name is not valid. Use letters, digits, dots, dashes and underscores."
	}
	return "The request was refused. Check the fields and try again."
}
