package verifier

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigDefaultsAndTrim(t *testing.T) {
	c := Config{Mount: "/apikeys/", TransitMount: "transit/"}
	c.setDefaults()
	assert.Equal(t, "apikeys", c.Mount)
	assert.Equal(t, "transit", c.TransitMount)
	assert.Equal(t, DefaultStaleIfError, c.StaleIfError)
	assert.Equal(t, DefaultCacheSize, c.CacheSize)
	assert.NotNil(t, c.Logger)
}

func TestConfigValidate(t *testing.T) {
	ok := func() Config {
		c := Config{VaultAddrs: []string{"http://127.0.0.1:8200"}, VaultToken: "t"}
		c.setDefaults()
		return c
	}
	c := ok()
	require.NoError(t, c.validate())

	for name, tc := range map[string]struct {
		change func(*Config)
		want   string
	}{
		"no address":      {func(c *Config) { c.VaultAddrs = nil }, "no Vault address"},
		"no credential":   {func(c *Config) { c.VaultToken = "" }, "no Vault credentials"},
		"two credentials": {func(c *Config) { c.VaultTokenFile = "/f" }, "more than one"},
		"half an AppRole": {func(c *Config) { c.VaultToken = ""; c.AppRoleRoleID = "r" }, "both a role id"},
		"long feed wait":  {func(c *Config) { c.FeedWait = MaxFeedWait + time.Second }, "feed wait"},
		"long feed hold":  {func(c *Config) { c.FeedHoldCreated = MaxFeedHoldCreated + time.Millisecond }, "feed hold"},
		"negative ttl":    {func(c *Config) { c.MaxAge = -time.Second }, "max age must not be negative"},
		"negative size":   {func(c *Config) { c.CacheSize = -1 }, "cache size must not be negative"},
	} {
		c := ok()
		tc.change(&c)
		assert.ErrorContains(t, c.validate(), tc.want, name)
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes(" 10.1.2.3/8, ,192.0.2.7 ,::ffff:198.51.100.1")
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("198.51.100.1/32"),
	}, got)
	_, err = ParsePrefixes("10.0.0.0/8,proxy.internal")
	assert.ErrorContains(t, err, `"proxy.internal"`)
}
