package verifier

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientAddr is the caller's address: the peer, or — when the peer is a trusted
// proxy — the nearest address in X-Forwarded-For that is not a trusted proxy.
// Addresses a client wrote itself (left of the first untrusted hop) are ignored;
// an unreadable hop gives no address (the zero Addr).
func (v *Verifier) clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	peer := ap.Addr().Unmap()
	if !v.trusted(peer) {
		return peer
	}
	hops := r.Header.Values("X-Forwarded-For")
	addr := peer
	for i := len(hops) - 1; i >= 0; i-- {
		list := hops[i]
		for list != "" {
			var hop string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				hop, list = list[j+1:], list[:j]
			} else {
				hop, list = list, ""
			}
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
				// A trusted proxy wrote something we cannot read: no address,
				// so CIDR-restricted keys are refused rather than checked
				// against the proxy's own address.
				return netip.Addr{}
			}
			addr = a.Unmap()
			if !v.trusted(addr) {
				return addr
			}
		}
	}
	return addr
}

func (v *Verifier) trusted(a netip.Addr) bool {
	for _, p := range v.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
