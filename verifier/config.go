package verifier

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Defaults for Config fields left zero.
const (
	DefaultMount             = "apikeys"
	DefaultTransitMount      = "transit"
	DefaultTransitKey        = "apikeys"
	DefaultStaleIfError      = 30 * time.Second
	DefaultUsageFlush        = 10 * time.Second
	DefaultFeedWait          = 2 * time.Second
	DefaultFeedHoldCreated   = 20 * time.Millisecond
	DefaultVaultTimeout      = 3 * time.Second
	DefaultMaxInFlight       = 2
	DefaultCacheSize         = 100_000
	DefaultDEKCacheSize      = 1024
	DefaultUsageMaxKeys      = 100_000
	DefaultMaxAge            = 10 * time.Minute
	DefaultTenantHeader      = "X-Apikey-Tenant"
	DefaultWorkspaceHeader   = "X-Apikey-Workspace"
	DefaultPermissionsHeader = "X-Apikey-Permissions"

	// MaxFeedWait is the longest long-poll the plugin accepts: Vault holds its
	// state lock for the whole request, so a longer poll would stall seal and
	// step-down (DESIGN §4).
	MaxFeedWait = wire.MaxWait
	// MaxFeedHoldCreated is the longest hold_created the plugin accepts.
	MaxFeedHoldCreated = wire.MaxHoldCreated
	// MaxBodyBytes bounds a POST /v1/verify body.
	MaxBodyBytes = 16 << 10
)

// Config is everything a Verifier needs. Zero fields take the defaults above.
type Config struct {
	// VaultAddrs are the Vault API addresses, tried in order on connection
	// errors (any node of an HA cluster serves or forwards).
	VaultAddrs []string
	// Exactly one way to authenticate: a token, a file holding one (re-read
	// when it changes, e.g. a Vault Agent sink), or AppRole.
	VaultToken          string
	VaultTokenFile      string
	AppRoleRoleID       string
	AppRoleSecretIDFile string

	Mount        string // plugin mount path
	TransitMount string // transit mount path
	TransitKey   string // transit key that wraps the data keys

	// StaleIfError is how long cached verdicts are served after the last
	// successful feed poll; after that every answer is ErrUnavailable.
	StaleIfError time.Duration
	// UsageFlush is the interval of batched usage reports to the plugin.
	UsageFlush time.Duration
	// FeedWait is the long-poll wait of each `changes` read (≤ MaxFeedWait).
	FeedWait time.Duration
	// FeedHoldCreated lets the plugin hold a feed answer that only announces
	// new keys this long, so that later ones come with it: new keys evict
	// nothing, and under an issuance load the verifier polls once per hold
	// instead of once per round trip. Any other change is answered at once.
	// Negative turns holding off (≤ MaxFeedHoldCreated).
	FeedHoldCreated time.Duration
	// VaultTimeout bounds every Vault call except the long-poll's wait itself.
	VaultTimeout time.Duration
	// MaxInFlight bounds concurrent lookup requests to Vault. One goes out at
	// once; the others only beside a slow one or with a full batch (loader).
	MaxInFlight int

	CacheSize    int // most key records cached
	DEKCacheSize int // most unwrapped data keys cached
	UsageMaxKeys int // most distinct keys aggregated between usage flushes

	// MaxAge bounds how old a cached verdict may be, as a backstop to the feed:
	// records are refreshed in the background before they reach it, and one
	// past it is answered by lookup.
	MaxAge time.Duration

	// AuditLog is where decision lines go: "" for nowhere, "-" for stdout, or
	// a file path (appended, reopened by ReopenAudit, e.g. on SIGHUP).
	AuditLog string

	// TrustedProxies are peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// TenantHeader, WorkspaceHeader and PermissionsHeader carry what GET
	// /v1/auth checks. The proxy must set or clear each of them on every
	// request: a value the client sent would otherwise reach the verifier.
	TenantHeader      string
	WorkspaceHeader   string
	PermissionsHeader string

	Logger hclog.Logger
}

func (c *Config) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	def(&c.Mount, DefaultMount)
	def(&c.TransitMount, DefaultTransitMount)
	def(&c.TransitKey, DefaultTransitKey)
	def(&c.TenantHeader, DefaultTenantHeader)
	def(&c.WorkspaceHeader, DefaultWorkspaceHeader)
	def(&c.PermissionsHeader, DefaultPermissionsHeader)
	defDur(&c.StaleIfError, DefaultStaleIfError)
	defDur(&c.UsageFlush, DefaultUsageFlush)
	defDur(&c.FeedWait, DefaultFeedWait)
	defDur(&c.FeedHoldCreated, DefaultFeedHoldCreated)
	defDur(&c.VaultTimeout, DefaultVaultTimeout)
	defDur(&c.MaxAge, DefaultMaxAge)
	defInt(&c.MaxInFlight, DefaultMaxInFlight)
	defInt(&c.CacheSize, DefaultCacheSize)
	defInt(&c.DEKCacheSize, DefaultDEKCacheSize)
	defInt(&c.UsageMaxKeys, DefaultUsageMaxKeys)
	c.Mount = strings.Trim(c.Mount, "/")
	c.TransitMount = strings.Trim(c.TransitMount, "/")
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

func (c *Config) validate() error {
	var errs []error
	if len(c.VaultAddrs) == 0 {
		errs = append(errs, errors.New("no Vault address: set -vault-addr or VAULT_ADDR"))
	}
	ways := 0
	for _, set := range []bool{c.VaultToken != "", c.VaultTokenFile != "", c.AppRoleRoleID != "" || c.AppRoleSecretIDFile != ""} {
		if set {
			ways++
		}
	}
	switch {
	case ways == 0:
		errs = append(errs, errors.New("no Vault credentials: set a token, a token file, or an AppRole role id and secret id file"))
	case ways > 1:
		errs = append(errs, errors.New("more than one Vault credential: choose a token, a token file, or AppRole"))
	case (c.AppRoleRoleID == "") != (c.AppRoleSecretIDFile == ""):
		errs = append(errs, errors.New("AppRole needs both a role id and a secret id file"))
	}
	if c.FeedWait < 0 || c.FeedWait > MaxFeedWait {
		errs = append(errs, fmt.Errorf("feed wait %s is outside 0..%s: longer polls stall Vault seal and step-down", c.FeedWait, MaxFeedWait))
	}
	if c.FeedHoldCreated > MaxFeedHoldCreated {
		errs = append(errs, fmt.Errorf("feed hold for new keys %s is over %s: the plugin holds no longer", c.FeedHoldCreated, MaxFeedHoldCreated))
	}
	for name, d := range map[string]time.Duration{"stale-if-error": c.StaleIfError, "usage flush": c.UsageFlush, "vault timeout": c.VaultTimeout, "max age": c.MaxAge} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	for name, n := range map[string]int{"max in flight": c.MaxInFlight, "cache size": c.CacheSize, "DEK cache size": c.DEKCacheSize, "usage max keys": c.UsageMaxKeys} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", name))
		}
	}
	return errors.Join(errs...)
}

// ParsePrefixes reads a comma-separated list of CIDRs or bare addresses, as
// used for trusted proxies.
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range appendList(nil, s) {
		p, ok := parsePrefix(f)
		if !ok {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", f)
		}
		out = append(out, p)
	}
	return out, nil
}

// appendList adds the items of a comma-separated list (CIDRs, permissions) to
// out: items trimmed, empty ones dropped. Vault addresses are read by
// vaultaddr.Split; this one appends, so a request's permission headers
// cost one slice.
func appendList(out []string, s string) []string {
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}
