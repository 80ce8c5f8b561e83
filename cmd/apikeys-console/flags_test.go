package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFlagsDefaultsAndEnvironment(t *testing.T) {
	o, err := parseFlags(nil, env(map[string]string{"VAULT_ADDR": "http://127.0.0.1:8200"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8090", o.listen)
	assert.Equal(t, "http://127.0.0.1:8200", o.cfg.VaultAddr)
	assert.Equal(t, "apikeys", o.cfg.Mount)
	assert.Equal(t, "userpass", o.cfg.AuthMethod)

	o, err = parseFlags([]string{"-mount", "keys2"}, env(map[string]string{
		"VAULT_ADDR":                   "http://ignored:8200",
		"APIKEYS_CONSOLE_VAULT_ADDR":   "https://vault.example:8200",
		"APIKEYS_CONSOLE_MOUNT":        "fromenv",
		"APIKEYS_CONSOLE_AUTH_METHOD":  "ldap",
		"APIKEYS_CONSOLE_AUTH_MOUNT":   "corp-ldap",
		"APIKEYS_CONSOLE_LISTEN":       "127.0.0.1:9999",
		"APIKEYS_CONSOLE_IDLE_TIMEOUT": "5m",
	}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "https://vault.example:8200", o.cfg.VaultAddr, "APIKEYS_CONSOLE_* beats VAULT_ADDR")
	assert.Equal(t, "keys2", o.cfg.Mount, "a flag beats the environment")
	assert.Equal(t, "ldap", o.cfg.AuthMethod)
	assert.Equal(t, "corp-ldap", o.cfg.AuthMount)
	assert.Equal(t, "127.0.0.1:9999", o.listen)
	assert.Equal(t, 5*time.Minute, o.cfg.IdleTimeout)
}

func TestFlagsRefuseBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"no vault address": {nil, nil},
		"cert without key": {[]string{"-vault-addr", "http://v:8200", "-tls-cert", "c.pem"}, nil},
		"stray argument":   {[]string{"-vault-addr", "http://v:8200", "extra"}, nil},
		"bad env duration": {[]string{"-vault-addr", "http://v:8200"}, map[string]string{"APIKEYS_CONSOLE_IDLE_TIMEOUT": "soon"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseFlags(tc.args, env(tc.env), io.Discard)
			assert.Error(t, err)
		})
	}
}

func TestRunRefusesUnsupportedAuthMethod(t *testing.T) {
	assert.Equal(t, 2, run([]string{"-vault-addr", "http://127.0.0.1:1", "-auth-method", "oidc"}, io.Discard))
}
