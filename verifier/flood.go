package verifier

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Random tokens with valid checksums are cheap to make, and each one is a miss:
// a lookup and a NOT_FOUND answer. Two things keep them from hurting real keys
// (DESIGN §6): NOT_FOUND answers live in their own small part of the cache, so
// they never evict a known key, and misses from a source that keeps presenting
// unknown keys wait in a small queue of their own (see loader), behind every
// other miss.
//
// A source is the client address's /24 (IPv4) or /56 (IPv6): what one host or
// a small network controls. Callers without an address form one source.
const (
	floodWindow    = time.Minute
	floodThreshold = 8                 // NOT_FOUND answers per window that make a source suspect
	floodSources   = 65_536            // sources tracked per window: bounded memory
	lowQueue       = 4 * wire.MaxBatch // misses of suspect sources waiting at most
)

// errFlooded fails a miss of a suspect source when its queue is full.
var errFlooded = fmt.Errorf("%w: too many lookups of unknown keys from this client", ErrUnavailable)

// flood counts NOT_FOUND answers per source over the current and the previous
// window.
type flood struct {
	mu        sync.Mutex
	now       func() time.Time
	start     time.Time
	cur, prev map[netip.Prefix]uint32
}

func newFlood(now func() time.Time) *flood {
	return &flood{now: now, start: now(), cur: make(map[netip.Prefix]uint32)}
}

func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 56
	}
	p, _ := a.Prefix(bits) // the zero address gives the zero prefix: one source
	return p
}

// rotate starts a new window when the current one is over. Caller holds mu.
func (f *flood) rotate() {
	now := f.now()
	if now.Sub(f.start) < floodWindow {
		return
	}
	if now.Sub(f.start) < 2*floodWindow {
		f.prev = f.cur
	} else {
		f.prev = nil
	}
	f.cur = make(map[netip.Prefix]uint32)
	f.start = now
}

// suspect reports whether misses from a should wait in the low queue.
func (f *flood) suspect(a netip.Addr) bool {
	p := sourceOf(a)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate()
	return f.cur[p]+f.prev[p] >= floodThreshold
}

// notFound counts a NOT_FOUND answer to a.
func (f *flood) notFound(a netip.Addr) {
	p := sourceOf(a)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rotate()
	if n, ok := f.cur[p]; ok || len(f.cur) < floodSources {
		f.cur[p] = n + 1
	}
}
