package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/vault-apikeys/vault-apikeys/e2e/history"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// apiClient is the one place the history run builds plugin paths: moving keys
// under tenants/<tenant>/ is a change to keyPath and revokePath only. It
// speaks raw HTTP so a request can be cut off at any point by its context.
type apiClient struct {
	addrs []string // tried in order when a node refuses the connection
	token string
	mount string
	http  *http.Client
}

func newAPIClient(addrs []string, token, mount string) *apiClient {
	return &apiClient{addrs: addrs, token: token, mount: mount,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
}

func (c *apiClient) keyPath(name string) string { return c.mount + "/tenants/acme/keys/" + name }
func (c *apiClient) revokePath() string         { return c.mount + "/tenants/acme/revoke" }
func (c *apiClient) rolePath(role string) string {
	return c.mount + "/roles/" + role
}

// answer is a mutation's result: the fields the history needs.
type answer struct {
	KeyID string
	Key   string // the secret, held in memory only, never recorded
	Seq   uint64
}

// callError carries the HTTP status so the outcome can be judged: a 4xx is a
// refusal that changed nothing, anything else may or may not have happened.
type callError struct {
	status int
	msg    string
}

func (e *callError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.msg) }

// outcome classifies err for the history.
func outcome(err error) history.Outcome {
	if err == nil {
		return history.OK
	}
	if ce, ok := err.(*callError); ok && ce.status >= 400 && ce.status < 500 {
		return history.Failed
	}
	return history.Unknown
}

// do sends one request and decodes the response's data. Only a refused
// connection (the request never reached Vault: a node is down) moves on to
// the next node; any other failure is the caller's unknown outcome.
func (c *apiClient) do(ctx context.Context, method, path string, body any) (map[string]any, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	var resp *http.Response
	var err error
	for _, addr := range c.addrs {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, method, addr+"/v1/"+path, bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Vault-Token", c.token)
		if method == http.MethodPatch {
			req.Header.Set("Content-Type", "application/merge-patch+json")
		}
		if resp, err = c.http.Do(req); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Errors []string `json:"errors"`
		}
		_ = json.Unmarshal(raw, &e)
		// Vault's error text never holds the key: requests name keys by name or key_id.
		return nil, &callError{status: resp.StatusCode, msg: strings.Join(e.Errors, "; ")}
	}
	if len(raw) == 0 {
		return map[string]any{}, nil
	}
	var out struct {
		Data map[string]any `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

func (c *apiClient) mutate(ctx context.Context, method, path string, body any) (answer, error) {
	data, err := c.do(ctx, method, path, body)
	if err != nil {
		return answer{}, err
	}
	a := answer{}
	a.KeyID, _ = data["key_id"].(string)
	a.Key, _ = data["key"].(string)
	if n, ok := data["seq"].(json.Number); ok {
		s, _ := n.Int64()
		a.Seq = uint64(s)
	}
	return a, nil
}

// Issue creates a key of role under name.
func (c *apiClient) Issue(ctx context.Context, name, role string) (answer, error) {
	return c.mutate(ctx, http.MethodPost, c.keyPath(name), map[string]any{"role": role})
}

// Rotate replaces name's key at once (grace 0: the old key is revoked).
func (c *apiClient) Rotate(ctx context.Context, name string) (answer, error) {
	return c.mutate(ctx, http.MethodPost, c.keyPath(name)+"/rotate", map[string]any{"grace": "0"})
}

// Disable and Enable switch name's key off and on.
func (c *apiClient) Disable(ctx context.Context, name string) (answer, error) {
	return c.mutate(ctx, http.MethodPost, c.keyPath(name)+"/disable", nil)
}

// Enable switches name's key back on.
func (c *apiClient) Enable(ctx context.Context, name string) (answer, error) {
	return c.mutate(ctx, http.MethodPost, c.keyPath(name)+"/enable", nil)
}

// Patch changes name's description (neither narrows nor widens).
func (c *apiClient) Patch(ctx context.Context, name, description string) (answer, error) {
	return c.mutate(ctx, http.MethodPatch, c.keyPath(name), map[string]any{"description": description})
}

// Revoke revokes by key_id, the incident-response path: a retry of a
// revocation that happened answers already_revoked.
func (c *apiClient) Revoke(ctx context.Context, keyID string) (answer, error) {
	return c.mutate(ctx, http.MethodPost, c.revokePath(), map[string]any{"key_id": keyID})
}

// Downgrade (or upgrade) sets role's permissions.
func (c *apiClient) Downgrade(ctx context.Context, role string, permissions []string) (answer, error) {
	return c.mutate(ctx, http.MethodPost, c.rolePath(role), map[string]any{"permissions": strings.Join(permissions, ",")})
}

// Statuses reads back the status of every key_id through `lookup` (as root).
func (c *apiClient) Statuses(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	for len(ids) > 0 {
		n := min(len(ids), wire.MaxBatch)
		data, err := c.do(ctx, http.MethodPost, c.mount+"/lookup", map[string]any{"key_ids": ids[:n]})
		if err != nil {
			return out, err
		}
		entries, _ := data["entries"].([]any)
		for _, e := range entries {
			m, _ := e.(map[string]any)
			id, _ := m["key_id"].(string)
			st, _ := m["status"].(string)
			out[id] = st
		}
		ids = ids[n:]
	}
	return out, nil
}

// Changes reads one page of the feed after a seq.
func (c *apiClient) Changes(ctx context.Context, after uint64, wait time.Duration) (wire.Changes, error) {
	var ch wire.Changes
	data, err := c.do(ctx, http.MethodGet, fmt.Sprintf("%s/changes?after=%d&wait=%s", c.mount, after, wait), nil)
	if err != nil {
		return ch, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return ch, err
	}
	return ch, json.Unmarshal(raw, &ch)
}

// Config writes mount configuration.
func (c *apiClient) Config(ctx context.Context, fields map[string]any) error {
	_, err := c.do(ctx, http.MethodPost, c.mount+"/config", fields)
	return err
}

// Tidy starts a tidy run.
func (c *apiClient) Tidy(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, c.mount+"/tidy", map[string]any{})
	return err
}

// ReloadPlugin reloads the plugin's backends (as `vault plugin reload` does).
func (c *apiClient) ReloadPlugin(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPut, "sys/plugins/reload/backend", map[string]any{"plugin": "vault-plugin-secrets-apikeys"})
	return err
}
