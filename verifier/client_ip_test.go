package verifier

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClientAddr(t *testing.T) {
	v := &Verifier{cfg: Config{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	}}}
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.1:80", nil, "192.0.2.1"},
		{"192.0.2.1:80", []string{"203.0.113.9"}, "192.0.2.1"},                     // untrusted peer: header ignored
		{"10.0.0.1:80", []string{"203.0.113.9"}, "203.0.113.9"},                    // trusted proxy
		{"10.0.0.1:80", []string{"6.6.6.6, 203.0.113.9, 10.0.0.2"}, "203.0.113.9"}, // skip trusted hops, ignore spoofed left part
		{"10.0.0.1:80", []string{"6.6.6.6", "203.0.113.9"}, "203.0.113.9"},         // several header lines
		{"10.0.0.1:80", []string{"10.0.0.3"}, "10.0.0.3"},                          // all trusted: the leftmost
		{"10.0.0.1:80", []string{"junk"}, ""},                                      // unreadable: no address
		{"10.0.0.1:80", nil, "10.0.0.1"},
		{"[::1]:80", []string{"2001:db8::1"}, "2001:db8::1"},
		{"[::ffff:192.0.2.1]:80", nil, "192.0.2.1"},
		{"not-an-addr", nil, ""},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.remote
		for _, x := range tc.xff {
			r.Header.Add("X-Forwarded-For", x)
		}
		got := v.clientAddr(r)
		if tc.want == "" {
			assert.False(t, got.IsValid(), "%s %v", tc.remote, tc.xff)
		} else {
			assert.Equal(t, tc.want, got.String(), "%s %v", tc.remote, tc.xff)
		}
	}
}
