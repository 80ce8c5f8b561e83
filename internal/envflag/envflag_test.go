package envflag

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func newFlags() (*flag.FlagSet, *string, *time.Duration) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs, fs.String("vault-addr", "default", ""), fs.Duration("stale-if-error", time.Second, "")
}

func TestName(t *testing.T) {
	assert.Equal(t, "APIKEYS_VERIFIER_STALE_IF_ERROR", Name("APIKEYS_VERIFIER", "stale-if-error"))
}

func TestFlagBeatsEnvironmentBeatsDefault(t *testing.T) {
	fs, addr, stale := newFlags()
	require.NoError(t, Parse(fs, "P", []string{"-vault-addr", "flag"}, env(map[string]string{
		"P_VAULT_ADDR": "env", "P_STALE_IF_ERROR": "5s",
	})))
	assert.Equal(t, "flag", *addr)
	assert.Equal(t, 5*time.Second, *stale)
}

func TestParseErrors(t *testing.T) {
	fs, _, _ := newFlags()
	err := Parse(fs, "P", nil, env(map[string]string{"P_STALE_IF_ERROR": "soon"}))
	assert.ErrorContains(t, err, "P_STALE_IF_ERROR", "the variable is named")

	fs, _, _ = newFlags()
	assert.ErrorContains(t, Parse(fs, "P", []string{"extra"}, env(nil)), "unexpected arguments")
}
