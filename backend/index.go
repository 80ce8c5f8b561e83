package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/hashicorp/vault/sdk/logical"
)

// Index is the in-memory, ordered view of live keys on the serving node: list
// pages, filters and quota counters without storage scans per request. Items
// are keyed by ref ("<tenant>/<name>"), so one tenant's keys are contiguous and
// a tenant's page is a range walk. It is loaded once from storage (name/
// entries) and kept current by writers.
type Index struct {
	mu     sync.RWMutex
	loaded bool
	names  *btree.BTreeG[indexItem]
	byRole map[string]int
	// tenants counts live keys per tenant, in tenant order (for listing tenants).
	tenants *btree.BTreeG[tenantCount]
	// byTenantRole counts live keys per tenant and role (a role's max_keys is per tenant).
	byTenantRole map[tenantRole]int
	// pending holds refs reserved by in-flight creates: they count against
	// quotas and block duplicates before anything is written.
	pending map[string]string
}

type indexItem struct {
	name  string // the ref: tenant/name
	entry NameEntry
}

type tenantCount struct {
	tenant string
	keys   int
}

type tenantRole struct{ tenant, role string }

func lessItem(a, b indexItem) bool     { return a.name < b.name }
func lessTenant(a, b tenantCount) bool { return a.tenant < b.tenant }

// NewIndex returns an empty, unloaded index.
func NewIndex() *Index {
	return &Index{names: btree.NewG(32, lessItem), byRole: map[string]int{}, pending: map[string]string{},
		tenants: btree.NewG(32, lessTenant), byTenantRole: map[tenantRole]int{}}
}

func (x *Index) ensure(ctx context.Context, s logical.Storage) error {
	x.mu.RLock()
	loaded := x.loaded
	x.mu.RUnlock()
	if loaded {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded {
		return nil
	}
	tenants, err := s.List(ctx, storageNamePrefix)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	for _, t := range tenants {
		if !strings.HasSuffix(t, "/") {
			continue // not a tenant folder
		}
		prefix := storageNamePrefix + t
		names, err := s.List(ctx, prefix)
		if err != nil {
			return fmt.Errorf("list key names: %w", err)
		}
		for _, name := range names {
			var e NameEntry
			ok, err := getJSON(ctx, s, prefix+name, &e)
			if err != nil {
				return err
			}
			if ok {
				x.setLocked(t+name, e)
			}
		}
	}
	x.loaded = true
	return nil
}

func (x *Index) setLocked(ref string, e NameEntry) {
	tenant, _ := splitRef(ref)
	if old, ok := x.names.ReplaceOrInsert(indexItem{ref, e}); ok {
		x.byRole[old.entry.Role]--
		x.byTenantRole[tenantRole{tenant, old.entry.Role}]--
	} else {
		x.addTenantLocked(tenant, 1)
	}
	x.byRole[e.Role]++
	x.byTenantRole[tenantRole{tenant, e.Role}]++
}

func (x *Index) addTenantLocked(tenant string, n int) {
	c, _ := x.tenants.Get(tenantCount{tenant: tenant})
	c.tenant, c.keys = tenant, c.keys+n
	if c.keys <= 0 {
		x.tenants.Delete(c)
		return
	}
	x.tenants.ReplaceOrInsert(c)
}

// Limits are the quotas a create is checked against (0 = unlimited).
type Limits struct {
	Mount  int // config max_keys: the whole mount
	Tenant int // the tenant's max_keys, else config max_keys_per_tenant
	Role   int // the role's max_keys, counted within the tenant
}

// Reserve claims ref for a create in role, or says why it cannot: the name
// exists in the tenant, or a quota is full.
func (x *Index) Reserve(ctx context.Context, s logical.Storage, ref, role string, lim Limits) (string, error) {
	if err := x.ensure(ctx, s); err != nil {
		return "", err
	}
	tenant, name := splitRef(ref)
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.names.Get(indexItem{name: ref}); ok {
		return fmt.Sprintf("a key named %q already exists in tenant %q: choose another name, or rotate it with tenants/%s/keys/%s/rotate", name, tenant, tenant, name), nil
	}
	if _, ok := x.pending[ref]; ok {
		return fmt.Sprintf("a key named %q is being created in tenant %q right now", name, tenant), nil
	}
	tc, _ := x.tenants.Get(tenantCount{tenant: tenant})
	tenantCount, roleCount := tc.keys, x.byTenantRole[tenantRole{tenant, role}]
	for p, r := range x.pending {
		if t, _ := splitRef(p); t == tenant {
			tenantCount++
			if r == role {
				roleCount++
			}
		}
	}
	if lim.Mount > 0 && x.names.Len()+len(x.pending) >= lim.Mount {
		return fmt.Sprintf("key limit exceeded: the mount holds its max_keys=%d live keys; revoke some or raise max_keys in config", lim.Mount), nil
	}
	if lim.Tenant > 0 && tenantCount >= lim.Tenant {
		return fmt.Sprintf("key limit exceeded: tenant %q holds its max_keys=%d live keys; revoke some, or ask an operator to raise the tenant's max_keys", tenant, lim.Tenant), nil
	}
	if lim.Role > 0 && roleCount >= lim.Role {
		return fmt.Sprintf("key limit exceeded: tenant %q holds max_keys=%d live keys of role %q; revoke some or raise the role's max_keys", tenant, lim.Role, role), nil
	}
	x.pending[ref] = role
	return "", nil
}

// Commit turns a reservation into a live entry (or just releases it when e is nil).
func (x *Index) Commit(ref string, e *NameEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.pending, ref)
	if e != nil {
		x.setLocked(ref, *e)
	}
}

// TenantCount is the number of live keys of tenant.
func (x *Index) TenantCount(ctx context.Context, s logical.Storage, tenant string) (int, error) {
	if err := x.ensure(ctx, s); err != nil {
		return 0, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	c, _ := x.tenants.Get(tenantCount{tenant: tenant})
	return c.keys, nil
}

// Tenants returns up to limit tenants with live keys after `after`, in order,
// with their key counts.
func (x *Index) Tenants(ctx context.Context, s logical.Storage, after string, limit int) ([]tenantCount, error) {
	if err := x.ensure(ctx, s); err != nil {
		return nil, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []tenantCount
	x.tenants.AscendGreaterOrEqual(tenantCount{tenant: after}, func(c tenantCount) bool {
		if c.tenant == after {
			return true
		}
		out = append(out, c)
		return len(out) < limit
	})
	return out, nil
}

// Has reports whether name is live.
func (x *Index) Has(ctx context.Context, s logical.Storage, name string) (bool, error) {
	if err := x.ensure(ctx, s); err != nil {
		return false, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.names.Get(indexItem{name: name})
	return ok, nil
}

// Set records a changed entry for an existing name.
func (x *Index) Set(name string, e NameEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loaded {
		x.setLocked(name, e)
	}
}

// Remove drops ref.
func (x *Index) Remove(ref string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.names.Delete(indexItem{name: ref}); ok {
		tenant, _ := splitRef(ref)
		x.byRole[old.entry.Role]--
		x.byTenantRole[tenantRole{tenant, old.entry.Role}]--
		x.addTenantLocked(tenant, -1)
	}
}

// RoleCount is the number of live keys of role.
func (x *Index) RoleCount(ctx context.Context, s logical.Storage, role string) (int, error) {
	if err := x.ensure(ctx, s); err != nil {
		return 0, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.byRole[role], nil
}

// ListFilter selects refs for a page. Tenant, when set, keeps the walk inside
// that tenant's range; After is a ref.
type ListFilter struct {
	After     string
	Limit     int
	Tenant    string
	Role      string
	Workspace string
	Status    string
	Now       time.Time
}

// Page returns up to Limit names after After that pass the filter, in order.
// next is the last ref returned when more match after it, else empty.
func (x *Index) Page(ctx context.Context, s logical.Storage, f ListFilter) (names []string, entries map[string]NameEntry, next string, err error) {
	if err := x.ensure(ctx, s); err != nil {
		return nil, nil, "", err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	names = make([]string, 0, min(f.Limit, x.names.Len()))
	entries = make(map[string]NameEntry, cap(names))
	more := false
	x.walkLocked(f.Tenant, f.After, func(it indexItem) bool {
		if (f.Role == "" || it.entry.Role == f.Role) &&
			(f.Workspace == "" || it.entry.Workspace == f.Workspace) &&
			(f.Status == "" || it.entry.status(f.Now) == f.Status) {
			if len(names) == f.Limit {
				more = true // one match beyond the page: there is a next page
				return false
			}
			names = append(names, it.name)
			entries[it.name] = it.entry
		}
		return true
	})
	if more {
		next = names[len(names)-1]
	}
	return names, entries, next, nil
}

// walkLocked calls fn for each item after the ref `after` ("" = from the
// start), in order, within tenant's range when tenant is set, until fn
// returns false. The caller holds x.mu.
func (x *Index) walkLocked(tenant, after string, fn func(indexItem) bool) {
	start, prefix := after, ""
	if tenant != "" {
		prefix = refOf(tenant, "")
		start = max(start, prefix)
	}
	x.names.AscendGreaterOrEqual(indexItem{name: start}, func(it indexItem) bool {
		if it.name == after {
			return true
		}
		if !strings.HasPrefix(it.name, prefix) {
			return false
		}
		return fn(it)
	})
}

// Select walks names after `after` in order and keeps those pick accepts, up
// to limit. With budget > 0 it examines at most budget names. next is the name
// to continue after, or empty when the walk reached the end.
func (x *Index) Select(ctx context.Context, s logical.Storage, tenant, after string, limit, budget int,
	pick func(ref string, e NameEntry) (map[string]interface{}, bool)) ([]string, map[string]interface{}, string, error) {
	if err := x.ensure(ctx, s); err != nil {
		return nil, nil, "", err
	}
	// Copy candidates out under the lock; pick may do storage reads.
	x.mu.RLock()
	var candidates []indexItem
	exhausted := true
	x.walkLocked(tenant, after, func(it indexItem) bool {
		if budget > 0 && len(candidates) == budget {
			exhausted = false
			return false
		}
		candidates = append(candidates, it)
		return true
	})
	x.mu.RUnlock()

	keys := []string{}
	info := map[string]interface{}{}
	for i, it := range candidates {
		if v, ok := pick(it.name, it.entry); ok {
			keys = append(keys, it.name)
			info[it.name] = v
			if len(keys) == limit {
				if i == len(candidates)-1 && exhausted {
					return keys, info, "", nil
				}
				return keys, info, it.name, nil
			}
		}
	}
	if exhausted {
		return keys, info, "", nil
	}
	return keys, info, candidates[len(candidates)-1].name, nil
}

// NamingAllowlist returns up to max refs (0 = all) of the tenant's live keys
// that name the allow-list: a walk of the tenant's range, bounded by its quota.
func (x *Index) NamingAllowlist(ctx context.Context, s logical.Storage, tenant, list string, max int) ([]string, error) {
	if err := x.ensure(ctx, s); err != nil {
		return nil, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	x.walkLocked(tenant, "", func(it indexItem) bool {
		if slices.Contains(it.entry.Allowlists, list) {
			_, name := splitRef(it.name)
			out = append(out, name)
		}
		return max == 0 || len(out) < max
	})
	return out, nil
}
