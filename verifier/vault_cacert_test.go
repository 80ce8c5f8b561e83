package verifier

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
)

// VAULT_CACERT is honoured for the Vault client, as Vault's own tools do: a
// Vault served over https with a private CA is followed when the CA is named,
// and refused (certificate error) when it is not.
func TestVaultCACertIsHonoured(t *testing.T) {
	f := newFakeVault(t)
	target, err := url.Parse(f.srv.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	tlsVault := httptest.NewUnstartedServer(proxy)
	tlsVault.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	tlsVault.StartTLS()
	t.Cleanup(tlsVault.Close)
	ca := filepath.Join(t.TempDir(), "vault-ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsVault.Certificate().Raw}), 0o600))

	t.Setenv("VAULT_CACERT", "")
	logs := &lockedBuffer{}
	untrusting, err := New(Config{VaultAddrs: []string{tlsVault.URL}, VaultToken: f.token,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})})
	require.NoError(t, err)
	stopRunning := runInBackground(untrusting)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "certificate") }, 10*time.Second, 10*time.Millisecond,
		"without VAULT_CACERT the private CA is not trusted")
	require.False(t, untrusting.Status().Ready)
	stopRunning()

	t.Setenv("VAULT_CACERT", ca)
	startVerifier(t, f, func(c *Config) { c.VaultAddrs = []string{tlsVault.URL} }) // waits until it follows the feed
}

// runInBackground runs v until the returned func is called.
func runInBackground(v *Verifier) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx); close(done) }()
	return func() { cancel(); <-done; _ = v.Close() }
}
