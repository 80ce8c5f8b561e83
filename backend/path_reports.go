package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// staleScanBudget bounds how many keys one stale-report page examines (each
// costs a usage read); the answer's next cursor continues from there.
const staleScanBudget = 5000

// expiringScanBudget bounds one expiring-report page; its checks are in memory.
const expiringScanBudget = 200000

func pathReports(b *Backend) []*framework.Path {
	page := map[string]*framework.FieldSchema{
		"after": {Type: framework.TypeString, Query: true, Description: "Continue after this key name (the previous page's next)."},
		"limit": {Type: framework.TypeInt, Query: true, Default: 100, Description: "Most keys per page (1-10000)."},
	}
	with := func(name string, f *framework.FieldSchema) map[string]*framework.FieldSchema {
		out := map[string]*framework.FieldSchema{name: f}
		for k, v := range page {
			out[k] = v
		}
		return out
	}
	return []*framework.Path{
		{
			Pattern:      "report/expiring",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "report", OperationSuffix: "expiring"},
			Fields:       with("within", &framework.FieldSchema{Type: framework.TypeDurationSecond, Query: true, Default: "720h", Description: "Report active keys that expire within this long (e.g. 720h)."}),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathReportExpiring},
			},
			HelpSynopsis:    "Keys that expire soon, with their expiry, paginated by name.",
			HelpDescription: "Lists active keys whose expires_at falls within the window. Answers keys, key_info and next (empty on the last page).",
		},
		{
			Pattern:      "report/stale",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "report", OperationSuffix: "stale"},
			Fields:       with("unused_for", &framework.FieldSchema{Type: framework.TypeDurationSecond, Query: true, Default: "2160h", Description: "Report live keys not used for this long; never-used keys count once their age passes it."}),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{Callback: b.pathReportStale},
			},
			HelpSynopsis:    "Keys unused for a while (candidates for revocation), paginated by name.",
			HelpDescription: "Uses the usage verifiers report. Answers keys, key_info (last_used_at, created_at) and next; a page examines a bounded number of keys, so follow next until it is empty.",
		},
	}
}

func pageArgs(d *framework.FieldData) (string, int, error) {
	limit := d.Get("limit").(int)
	if limit < 1 || limit > maxListLimit {
		return "", 0, fmt.Errorf("limit must be between 1 and %d", maxListLimit)
	}
	return d.Get("after").(string), limit, nil
}

func (b *Backend) pathReportExpiring(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	after, limit, err := pageArgs(d)
	if err != nil {
		return badRequest(err)
	}
	within := time.Duration(d.Get("within").(int)) * time.Second
	if within <= 0 {
		return badRequest(fmt.Errorf("within must be a positive duration such as 720h"))
	}
	now := b.now()
	horizon := now.Add(within)
	keys, info, next, err := b.index.Select(ctx, req.Storage, after, limit, expiringScanBudget, func(_ string, e NameEntry) (map[string]interface{}, bool) {
		if e.status(now) != wire.StatusActive || e.ExpiresAt == nil || e.ExpiresAt.After(horizon) {
			return nil, false
		}
		return map[string]interface{}{"key_id": e.KeyID, "role": e.Role, "workspace": e.Workspace,
			"expires_at": formatTime(e.ExpiresAt), "expires_in": e.ExpiresAt.Sub(now).Round(time.Second).String()}, true
	})
	if err != nil {
		return nil, err
	}
	return reportResponse(keys, info, next), nil
}

func (b *Backend) pathReportStale(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	after, limit, err := pageArgs(d)
	if err != nil {
		return badRequest(err)
	}
	unused := time.Duration(d.Get("unused_for").(int)) * time.Second
	if unused <= 0 {
		return badRequest(fmt.Errorf("unused_for must be a positive duration such as 2160h"))
	}
	now := b.now()
	cutoff := now.Add(-unused)
	var readErr error
	keys, info, next, err := b.index.Select(ctx, req.Storage, after, limit, staleScanBudget, func(_ string, e NameEntry) (map[string]interface{}, bool) {
		if readErr != nil {
			return nil, false
		}
		u, err := b.getUsage(ctx, req.Storage, e.KeyID)
		if err != nil {
			readErr = err
			return nil, false
		}
		last := e.CreatedAt
		lastUsed := ""
		if u != nil {
			last, lastUsed = u.LastUsedAt, u.LastUsedAt.Format(time.RFC3339)
		}
		if last.After(cutoff) {
			return nil, false
		}
		return map[string]interface{}{"key_id": e.KeyID, "role": e.Role, "workspace": e.Workspace,
			"status": e.status(now), "created_at": e.CreatedAt.Format(time.RFC3339), "last_used_at": lastUsed}, true
	})
	if err == nil {
		err = readErr
	}
	if err != nil {
		return nil, err
	}
	return reportResponse(keys, info, next), nil
}

func reportResponse(keys []string, info map[string]interface{}, next string) *logical.Response {
	return &logical.Response{Data: map[string]interface{}{"keys": keys, "key_info": info, "next": next}}
}
