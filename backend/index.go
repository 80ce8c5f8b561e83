package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/hashicorp/vault/sdk/logical"
)

// Index is the in-memory, name-ordered view of live keys on the serving node:
// list pages, filters and quota counters without storage scans per request.
// It is loaded once from storage (name/ entries) and kept current by writers.
type Index struct {
	mu     sync.RWMutex
	loaded bool
	names  *btree.BTreeG[indexItem]
	byRole map[string]int
	// pending holds names reserved by in-flight creates: they count against
	// quotas and block duplicates before anything is written.
	pending map[string]string
}

type indexItem struct {
	name  string
	entry NameEntry
}

func lessItem(a, b indexItem) bool { return a.name < b.name }

// NewIndex returns an empty, unloaded index.
func NewIndex() *Index {
	return &Index{names: btree.NewG(32, lessItem), byRole: map[string]int{}, pending: map[string]string{}}
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
	names, err := s.List(ctx, storageNamePrefix)
	if err != nil {
		return fmt.Errorf("list key names: %w", err)
	}
	for _, name := range names {
		var e NameEntry
		ok, err := getJSON(ctx, s, storageNamePrefix+name, &e)
		if err != nil {
			return err
		}
		if ok {
			x.setLocked(name, e)
		}
	}
	x.loaded = true
	return nil
}

func (x *Index) setLocked(name string, e NameEntry) {
	if old, ok := x.names.ReplaceOrInsert(indexItem{name, e}); ok {
		x.byRole[old.entry.Role]--
	}
	x.byRole[e.Role]++
}

// Reserve claims name for a create in role, or says why it cannot: the name
// exists, or a quota (mount maxTotal, role maxRole; 0 = unlimited) is full.
func (x *Index) Reserve(ctx context.Context, s logical.Storage, name, role string, maxTotal, maxRole int) (string, error) {
	if err := x.ensure(ctx, s); err != nil {
		return "", err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.names.Get(indexItem{name: name}); ok {
		return fmt.Sprintf("a key named %q already exists: choose another name, or rotate it with keys/%s/rotate", name, name), nil
	}
	if _, ok := x.pending[name]; ok {
		return fmt.Sprintf("a key named %q is being created right now", name), nil
	}
	roleCount := x.byRole[role]
	for _, r := range x.pending {
		if r == role {
			roleCount++
		}
	}
	if maxTotal > 0 && x.names.Len()+len(x.pending) >= maxTotal {
		return fmt.Sprintf("key limit exceeded: the mount holds its max_keys=%d live keys; revoke some or raise max_keys in config", maxTotal), nil
	}
	if maxRole > 0 && roleCount >= maxRole {
		return fmt.Sprintf("key limit exceeded: role %q holds its max_keys=%d live keys; revoke some or raise the role's max_keys", role, maxRole), nil
	}
	x.pending[name] = role
	return "", nil
}

// Commit turns a reservation into a live entry (or just releases it when e is nil).
func (x *Index) Commit(name string, e *NameEntry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.pending, name)
	if e != nil {
		x.setLocked(name, *e)
	}
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

// Remove drops name.
func (x *Index) Remove(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if old, ok := x.names.Delete(indexItem{name: name}); ok {
		x.byRole[old.entry.Role]--
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

// ListFilter selects names for a page.
type ListFilter struct {
	After     string
	Limit     int
	Prefix    string
	Role      string
	Workspace string
	Status    string
	Now       time.Time
}

// Page returns up to Limit names after After that pass the filter, in order.
func (x *Index) Page(ctx context.Context, s logical.Storage, f ListFilter) ([]string, map[string]NameEntry, error) {
	if err := x.ensure(ctx, s); err != nil {
		return nil, nil, err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	names := make([]string, 0, min(f.Limit, x.names.Len()))
	entries := make(map[string]NameEntry, cap(names))
	start := f.After
	if f.Prefix > start {
		start = f.Prefix
	}
	x.names.AscendGreaterOrEqual(indexItem{name: start}, func(it indexItem) bool {
		if it.name == f.After {
			return true
		}
		if f.Prefix != "" && !strings.HasPrefix(it.name, f.Prefix) {
			return false
		}
		if (f.Role == "" || it.entry.Role == f.Role) &&
			(f.Workspace == "" || it.entry.Workspace == f.Workspace) &&
			(f.Status == "" || it.entry.status(f.Now) == f.Status) {
			names = append(names, it.name)
			entries[it.name] = it.entry
		}
		return len(names) < f.Limit
	})
	return names, entries, nil
}

// Select walks names after `after` in order and keeps those pick accepts, up
// to limit. With budget > 0 it examines at most budget names. next is the name
// to continue after, or empty when the walk reached the end.
func (x *Index) Select(ctx context.Context, s logical.Storage, after string, limit, budget int,
	pick func(name string, e NameEntry) (map[string]interface{}, bool)) ([]string, map[string]interface{}, string, error) {
	if err := x.ensure(ctx, s); err != nil {
		return nil, nil, "", err
	}
	// Copy candidates out under the lock; pick may do storage reads.
	x.mu.RLock()
	var candidates []indexItem
	x.names.AscendGreaterOrEqual(indexItem{name: after}, func(it indexItem) bool {
		if it.name == after {
			return true
		}
		candidates = append(candidates, it)
		return budget <= 0 || len(candidates) < budget
	})
	exhausted := budget <= 0 || len(candidates) < budget
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
