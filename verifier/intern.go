package verifier

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// interner shares what many cached keys repeat — the grants block of a role
// (role, workspace, permissions, workspaces, role CIDRs, creator role), the
// tenant block (name, tenant CIDRs) and metadata — so a million cached keys
// of a few roles do not hold a million copies. It stops taking new values of
// a kind at its bound, so keys with unique values cannot make it grow without
// bound, and unique metadata cannot crowd out the blocks.
type interner struct {
	mu      sync.Mutex
	grants  map[string]*grants
	tenants map[string]*tenantBlock
	maps    map[string]map[string]string
}

const internMax = 50_000

// internTenantsMax bounds the tenant blocks: a mount holds up to 100,000
// tenants (DESIGN §1), each a few dozen bytes here, and tenants come only from
// Vault's answers for real keys, never from what a caller sends.
const internTenantsMax = 200_000

// repeated is the one interner of the process: cached keys of every Verifier
// in it share the values they repeat.
var repeated = &interner{grants: map[string]*grants{}, tenants: map[string]*tenantBlock{}, maps: map[string]map[string]string{}}

// grantsOf returns the shared grants block of e, parsing its role CIDRs once
// per distinct block.
func (in *interner) grantsOf(e *wire.Entry) *grants {
	var b strings.Builder
	for _, s := range []string{e.Role, e.Workspace, e.CreatorRole} {
		appendPart(&b, s)
	}
	for _, l := range [][]string{e.Permissions, e.AllowedWorkspaces, e.RoleAllowedCIDRs} {
		appendParts(&b, l)
	}
	key := b.String()
	in.mu.Lock()
	defer in.mu.Unlock()
	if g, ok := in.grants[key]; ok {
		return g
	}
	g := &grants{
		entry: wire.Entry{
			Role: e.Role, Workspace: e.Workspace, Permissions: e.Permissions, AllowedWorkspaces: e.AllowedWorkspaces,
			CreatorRole: e.CreatorRole,
		},
		roleNets: parseNets(e.RoleAllowedCIDRs),
	}
	if len(in.grants) < internMax {
		in.grants[key] = g
	}
	return g
}

// tenantOf returns the shared tenant block of e, parsing its tenant CIDRs once
// per distinct block; nil when e names no tenant and has no tenant list.
func (in *interner) tenantOf(e *wire.Entry) *tenantBlock {
	if e.Tenant == "" && len(e.TenantAllowedCIDRs) == 0 {
		return nil
	}
	var b strings.Builder
	appendPart(&b, e.Tenant)
	appendParts(&b, e.TenantAllowedCIDRs)
	key := b.String()
	in.mu.Lock()
	defer in.mu.Unlock()
	if t, ok := in.tenants[key]; ok {
		return t
	}
	t := &tenantBlock{name: e.Tenant, nets: parseNets(e.TenantAllowedCIDRs)}
	if len(in.tenants) < internTenantsMax {
		in.tenants[key] = t
	}
	return t
}

// appendParts writes l count-prefixed, its values with appendPart; nil and
// empty lists differ (they answer differently: JSON null and []).
func appendParts(b *strings.Builder, l []string) {
	if l == nil {
		b.WriteString("n;")
		return
	}
	b.WriteString(strconv.Itoa(len(l)))
	b.WriteByte(';')
	for _, s := range l {
		appendPart(b, s)
	}
}

// appendPart writes s length-prefixed, so no two different lists of values
// make the same key whatever bytes the values hold.
func appendPart(b *strings.Builder, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}

// metadata shares identical maps. Callers must never modify a returned map.
func (in *interner) metadata(m map[string]string) map[string]string {
	if len(m) == 0 || len(m) > 8 {
		return m
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		appendPart(&b, k)
		appendPart(&b, m[k])
	}
	key := b.String()
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.maps[key]; ok {
		return v
	}
	if len(in.maps) < internMax {
		in.maps[key] = m
	}
	return m
}
