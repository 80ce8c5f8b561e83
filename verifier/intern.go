package verifier

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// interner shares the values many cached records repeat — role names,
// workspaces, permission lists, role CIDR lists, metadata — so a million cached
// keys of a few roles do not hold a million copies. It stops taking new values
// at internMax, so keys with unique values cannot make it grow without bound.
type interner struct {
	mu    sync.Mutex
	strs  map[string]string
	lists map[string][]string
	nets  map[string][]netip.Prefix
	maps  map[string]map[string]string
}

const internMax = 50_000

// repeated is the one interner of the process: cached records of every
// Verifier in it share the values they repeat.
var repeated = &interner{
	strs: map[string]string{}, lists: map[string][]string{},
	nets: map[string][]netip.Prefix{}, maps: map[string]map[string]string{},
}

func (in *interner) size() int { return len(in.strs) + len(in.lists) + len(in.nets) + len(in.maps) }

func (in *interner) str(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.strs[s]; ok {
		return v
	}
	if in.size() < internMax {
		in.strs[s] = s
	}
	return s
}

func (in *interner) list(l []string) []string {
	if l == nil {
		return nil
	}
	key := strings.Join(l, "\x00")
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.lists[key]; ok {
		return v
	}
	if in.size() < internMax {
		in.lists[key] = l
	}
	return l
}

// netsOf parses a CIDR list once per distinct list.
func (in *interner) netsOf(l []string) []netip.Prefix {
	if len(l) == 0 {
		return nil
	}
	key := strings.Join(l, ",")
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.nets[key]; ok {
		return v
	}
	n := parseNets(l)
	if in.size() < internMax {
		in.nets[key] = n
	}
	return n
}

// metadata shares identical maps. Callers must never modify a returned map.
func (in *interner) metadata(m map[string]string) map[string]string {
	if len(m) == 0 || len(m) > 8 {
		return m
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	key := b.String()
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.maps[key]; ok {
		return v
	}
	if in.size() < internMax {
		in.maps[key] = m
	}
	return m
}
