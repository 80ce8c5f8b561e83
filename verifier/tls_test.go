package verifier

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A reload swaps the certificate whole; a failed one keeps the certificate in
// use, so a half-written pair never takes the listener down.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(cn string) {
		c, k, _ := selfSigned(t, cn)
		require.NoError(t, os.WriteFile(certFile, c, 0o600))
		require.NoError(t, os.WriteFile(keyFile, k, 0o600))
	}
	cn := func(c *certificate) string {
		got, err := c.config().GetCertificate(nil)
		require.NoError(t, err)
		require.NotNil(t, got.Leaf)
		return got.Leaf.Subject.CommonName
	}
	write("first")
	c, err := loadCertificate(certFile, keyFile)
	require.NoError(t, err)
	assert.Equal(t, "first", cn(c))

	require.NoError(t, os.WriteFile(keyFile, []byte("not a key"), 0o600))
	assert.Error(t, c.reload())
	assert.Equal(t, "first", cn(c), "a failed reload keeps the certificate in use")

	write("second")
	require.NoError(t, c.reload())
	assert.Equal(t, "second", cn(c))

	_, err = loadCertificate(filepath.Join(dir, "missing.pem"), keyFile)
	assert.ErrorContains(t, err, "missing.pem")
}
