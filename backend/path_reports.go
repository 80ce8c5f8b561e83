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

// report is one report's path: its name, its window field, how it runs and
// its help.
type report struct {
	name      string
	field     string
	schema    *framework.FieldSchema
	run       func(*Backend) reportFunc
	syn, desc string
}

var reports = []report{
	{"expiring", "within",
		&framework.FieldSchema{Type: framework.TypeDurationSecond, Query: true, Default: "720h", Description: "Report active keys that expire within this long (e.g. 720h)."},
		func(b *Backend) reportFunc { return b.pathReportExpiring },
		"Keys that expire soon, with their expiry, paginated.",
		"Lists active keys whose expires_at falls within the window. Answers keys, key_info and next (empty on the last page)."},
	{"stale", "unused_for",
		&framework.FieldSchema{Type: framework.TypeDurationSecond, Query: true, Default: "2160h", Description: "Report live keys not used for this long; never-used keys count once their age passes it."},
		func(b *Backend) reportFunc { return b.pathReportStale },
		"Keys unused for a while (candidates for revocation), paginated.",
		"Uses the usage verifiers report. Answers keys, key_info (last_used_at, created_at) and next; a page examines a bounded number of keys, so follow next until it is empty."},
}

func pathReports(b *Backend) []*framework.Path {
	// Each report is served twice: mount-wide for operators (rows
	// <tenant>/<name>, a tenant filter) and under tenants/<tenant>/ for its
	// admins (rows are names).
	var out []*framework.Path
	for _, perTenant := range []bool{false, true} {
		prefix, suffix := "", ""
		tenant := &framework.FieldSchema{Type: framework.TypeString, Query: true, Description: "Only keys of this tenant."}
		if perTenant {
			prefix, suffix, tenant = tenantPrefix(), "-tenant", tenantField()
		}
		scope := reportScope{perTenant: perTenant}
		for _, r := range reports {
			fields := pageFields("row")
			fields[r.field], fields["tenant"] = r.schema, tenant
			out = append(out, &framework.Path{
				Pattern:      prefix + "report/" + r.name + "$",
				DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "report", OperationSuffix: r.name + suffix},
				Fields:       fields,
				Operations: map[logical.Operation]framework.OperationHandler{
					logical.ReadOperation: &framework.PathOperation{Callback: scope.wrap(r.run(b))},
				},
				HelpSynopsis:    r.syn,
				HelpDescription: r.desc,
			})
		}
	}
	return out
}

// reportScope is where a report looks: one tenant (its rows are names) or
// the mount, optionally filtered to a tenant (rows are <tenant>/<name>).
type reportScope struct {
	perTenant bool
	tenant    string
}

type reportFunc func(ctx context.Context, req *logical.Request, d *framework.FieldData, sc reportScope, after string, limit int) (*logical.Response, error)

// wrap reads the scope and page of a report request, then runs it.
func (sc reportScope) wrap(run reportFunc) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		sc.tenant = d.Get("tenant").(string)
		if sc.perTenant || sc.tenant != "" {
			if err := validName("tenant", sc.tenant); err != nil {
				return badRequest(err)
			}
		}
		after, limit, err := pageArgs(d)
		if err != nil {
			return badRequest(err)
		}
		if sc.perTenant && after != "" {
			after = refOf(sc.tenant, after)
		}
		return run(ctx, req, d, sc, after, limit)
	}
}

// row names a ref in this scope's answers.
func (sc reportScope) row(ref string) string {
	if sc.perTenant {
		_, name := splitRef(ref)
		return name
	}
	return ref
}

// response renders a page, naming rows for the scope.
func (sc reportScope) response(refs []string, info map[string]interface{}, next string) *logical.Response {
	keys := make([]string, len(refs))
	rows := make(map[string]interface{}, len(refs))
	for i, ref := range refs {
		keys[i] = sc.row(ref)
		rows[keys[i]] = info[ref]
	}
	if next != "" {
		next = sc.row(next)
	}
	return &logical.Response{Data: map[string]interface{}{"keys": keys, "key_info": rows, "next": next}}
}

func pageArgs(d *framework.FieldData) (string, int, error) {
	limit := d.Get("limit").(int)
	if limit < 1 || limit > maxListLimit {
		return "", 0, fmt.Errorf("limit must be between 1 and %d", maxListLimit)
	}
	return d.Get("after").(string), limit, nil
}

func (b *Backend) pathReportExpiring(ctx context.Context, req *logical.Request, d *framework.FieldData, sc reportScope, after string, limit int) (*logical.Response, error) {
	within := time.Duration(d.Get("within").(int)) * time.Second
	if within <= 0 {
		return badRequest(fmt.Errorf("within must be a positive duration such as 720h"))
	}
	now := b.now()
	horizon := now.Add(within)
	keys, info, next, err := b.index.Select(ctx, req.Storage, sc.tenant, after, limit, expiringScanBudget, func(_ string, e NameEntry) (map[string]interface{}, bool) {
		if e.status(now) != wire.StatusActive || e.ExpiresAt == nil || e.ExpiresAt.After(horizon) {
			return nil, false
		}
		return map[string]interface{}{"key_id": e.KeyID, "role": e.Role, "workspace": e.Workspace,
			"expires_at": formatTime(e.ExpiresAt), "expires_in": e.ExpiresAt.Sub(now).Round(time.Second).String()}, true
	})
	if err != nil {
		return nil, err
	}
	return sc.response(keys, info, next), nil
}

func (b *Backend) pathReportStale(ctx context.Context, req *logical.Request, d *framework.FieldData, sc reportScope, after string, limit int) (*logical.Response, error) {
	unused := time.Duration(d.Get("unused_for").(int)) * time.Second
	if unused <= 0 {
		return badRequest(fmt.Errorf("unused_for must be a positive duration such as 2160h"))
	}
	now := b.now()
	cutoff := now.Add(-unused)
	var readErr error
	keys, info, next, err := b.index.Select(ctx, req.Storage, sc.tenant, after, limit, staleScanBudget, func(_ string, e NameEntry) (map[string]interface{}, bool) {
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
	return sc.response(keys, info, next), nil
}
