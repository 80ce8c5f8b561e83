package main

import (
	"io"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verifier"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFlagsOverEnvironmentOverVaultVariables(t *testing.T) {
	o, err := parseFlags([]string{"-stale-if-error", "5s"}, env(map[string]string{
		"APIKEYS_VERIFIER_STALE_IF_ERROR":  "9s",
		"APIKEYS_VERIFIER_USAGE_FLUSH":     "1s",
		"APIKEYS_VERIFIER_LISTEN":          "127.0.0.1:9999",
		"APIKEYS_VERIFIER_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
		"VAULT_ADDR":                       "http://vault:8200",
		"VAULT_TOKEN":                      "s.env",
	}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, o.cfg.StaleIfError, "flag beats environment")
	assert.Equal(t, time.Second, o.cfg.UsageFlush, "environment beats default")
	assert.Equal(t, "127.0.0.1:9999", o.server.Listen)
	assert.Equal(t, []string{"http://vault:8200"}, o.cfg.VaultAddrs)
	assert.Equal(t, "s.env", o.cfg.VaultToken)
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}, o.cfg.TrustedProxies)
	assert.Equal(t, "apikeys", o.cfg.Mount)
	assert.Equal(t, 2*time.Second, o.cfg.FeedWait)
	assert.Equal(t, 20*time.Millisecond, o.cfg.FeedHoldCreated)
}

func TestFlagsVaultAddressesAndCredentials(t *testing.T) {
	o, err := parseFlags([]string{"-vault-addr", "http://a:8200, http://b:8200", "-approle-role-id", "r", "-approle-secret-id-file", "/f"},
		env(map[string]string{"VAULT_ADDR": "http://ignored", "VAULT_TOKEN": "ignored"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []string{"http://a:8200", "http://b:8200"}, o.cfg.VaultAddrs)
	assert.Empty(t, o.cfg.VaultToken, "VAULT_TOKEN does not add a second credential to AppRole")
	o, err = parseFlags([]string{"-vault-token", "s.flag"}, env(map[string]string{"VAULT_TOKEN": "s.env"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "s.flag", o.cfg.VaultToken)
}

func TestFlagsRejectBadInput(t *testing.T) {
	for name, args := range map[string][]string{
		"bad duration":   {"-stale-if-error", "soon"},
		"bad log format": {"-log-format", "xml"},
		"bad proxy":      {"-trusted-proxies", "not-a-cidr"},
		"stray argument": {"extra"},
	} {
		_, err := parseFlags(args, env(nil), io.Discard)
		assert.Error(t, err, name)
	}
	_, err := parseFlags(nil, env(map[string]string{"APIKEYS_VERIFIER_CACHE_SIZE": "many"}), io.Discard)
	assert.ErrorContains(t, err, "APIKEYS_VERIFIER_CACHE_SIZE")
}

func TestRunExitsOnBadConfig(t *testing.T) {
	t.Setenv("VAULT_ADDR", "")
	t.Setenv("VAULT_TOKEN", "")
	assert.Equal(t, 2, run([]string{"-log-level", "off"}, io.Discard, io.Discard), "no Vault address or credentials")
	assert.Equal(t, 0, run([]string{"-h"}, io.Discard, io.Discard))
}

func TestFlagsServing(t *testing.T) {
	o, err := parseFlags([]string{"-tls-cert", "/etc/v/tls.crt", "-metrics-listen", "127.0.0.1:9090", "-shutdown-timeout", "3s"},
		env(map[string]string{"APIKEYS_VERIFIER_TLS_KEY": "/etc/v/tls.key"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "/etc/v/tls.crt", o.server.TLSCertFile)
	assert.Equal(t, "/etc/v/tls.key", o.server.TLSKeyFile)
	assert.Equal(t, "127.0.0.1:9090", o.server.MetricsListen)
	assert.Equal(t, 3*time.Second, o.server.ShutdownTimeout)
	assert.Equal(t, "127.0.0.1:8080", o.server.Listen)
}

func TestVersionFlag(t *testing.T) {
	var out strings.Builder
	assert.Equal(t, 0, run([]string{"-version"}, &out, io.Discard))
	assert.Equal(t, "apikeys-verifier "+verifier.Version+" ("+runtime.Version()+")\n", out.String())
}

func TestRunExitsWhenItCannotServe(t *testing.T) {
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "t")
	assert.Equal(t, 1, run([]string{"-log-level", "off", "-tls-cert", "/no/such.crt", "-tls-key", "/no/such.key"}, io.Discard, io.Discard))
}

func TestFlagMaxAge(t *testing.T) {
	o, err := parseFlags(nil, env(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Minute, o.cfg.MaxAge, "default")
	o, err = parseFlags(nil, env(map[string]string{"APIKEYS_VERIFIER_MAX_AGE": "90s"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 90*time.Second, o.cfg.MaxAge)
	o, err = parseFlags([]string{"-max-age", "1m"}, env(map[string]string{"APIKEYS_VERIFIER_MAX_AGE": "90s"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, time.Minute, o.cfg.MaxAge)
}
