package verifier

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// selfSigned makes a certificate for 127.0.0.1 named cn, as PEM files in dir.
func selfSigned(t *testing.T, cn string) (certPEM, keyPEM []byte, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), cert
}

// runServer builds a Verifier on f and runs a Server until the test ends; it
// returns the Server and a func that stops it and waits for Run's result.
func runServer(t *testing.T, f *fakeVault, tweak func(*Config), scfg ServerConfig) (*Server, func() error) {
	t.Helper()
	cfg := Config{VaultAddrs: []string{f.srv.URL}, VaultToken: f.token, Logger: hclog.NewNullLogger()}
	if tweak != nil {
		tweak(&cfg)
	}
	v, err := New(cfg)
	require.NoError(t, err)
	if scfg.Listen == "" {
		scfg.Listen = "127.0.0.1:0"
	}
	s, err := NewServer(v, scfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var result error
	stopped := false
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-done
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	require.Eventually(t, func() bool { return v.Status().Ready }, 5*time.Second, 2*time.Millisecond)
	return s, stop
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestServerTLSReloadsCertificateOnSIGHUP(t *testing.T) {
	f := newFakeVault(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	certA, keyA, a := selfSigned(t, "first")
	certB, keyB, b := selfSigned(t, "second")
	require.NoError(t, os.WriteFile(certFile, certA, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyA, 0o600))
	s, _ := runServer(t, f, nil, ServerConfig{TLSCertFile: certFile, TLSKeyFile: keyFile, Signals: true})
	base := "https://" + s.Addr().String()

	roots := x509.NewCertPool()
	roots.AddCert(a)
	roots.AddCert(b)
	client := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	}
	peer := func(resp *http.Response) string { return resp.TLS.PeerCertificates[0].Subject.CommonName }

	kept := client() // keeps its connection open across the reload
	resp, _ := get(t, kept, base+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "first", peer(resp))
	_, err := (&http.Client{Timeout: 5 * time.Second}).Get(base + "/healthz")
	assert.Error(t, err, "plain clients do not trust a self-signed certificate")
	plain, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err == nil {
		assert.NotEqual(t, http.StatusOK, plain.StatusCode, "no plain HTTP on a TLS listener")
		_ = plain.Body.Close()
	}

	require.NoError(t, os.WriteFile(certFile, certB, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyB, 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	require.Eventually(t, func() bool {
		c := client()
		defer c.CloseIdleConnections()
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return peer(resp) == "second"
	}, 5*time.Second, 10*time.Millisecond, "new connections get the reloaded certificate")
	resp, _ = get(t, kept, base+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "first", peer(resp), "an open connection is not dropped by the reload")

	// A broken pair does not replace the certificate in use.
	require.NoError(t, os.WriteFile(certFile, []byte("not a certificate"), 0o600))
	assert.Error(t, s.Reload())
	c := client()
	resp, _ = get(t, c, base+"/healthz")
	assert.Equal(t, "second", peer(resp))
	c.CloseIdleConnections()
	kept.CloseIdleConnections()
}

func TestServerRejectsHalfATLSPairAndBadFiles(t *testing.T) {
	f := newFakeVault(t)
	v, err := New(Config{VaultAddrs: []string{f.srv.URL}, VaultToken: f.token})
	require.NoError(t, err)
	_, err = NewServer(v, ServerConfig{Listen: "127.0.0.1:0", TLSCertFile: "x.crt"})
	assert.ErrorContains(t, err, "both")
	_, err = NewServer(v, ServerConfig{Listen: "127.0.0.1:0", TLSCertFile: "/no/such.crt", TLSKeyFile: "/no/such.key"})
	assert.ErrorContains(t, err, "/no/such.crt")
}

func TestServerMetricsListener(t *testing.T) {
	f := newFakeVault(t)
	s, _ := runServer(t, f, nil, ServerConfig{MetricsListen: "127.0.0.1:0"})
	require.NotNil(t, s.MetricsAddr())
	c := &http.Client{Timeout: 5 * time.Second}
	resp, body := get(t, c, "http://"+s.MetricsAddr().String()+"/metrics")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, `apikeys_verifier_build_info{goversion="`)
	assert.Contains(t, body, `version="`+Version+`"`)
	resp, _ = get(t, c, "http://"+s.Addr().String()+"/metrics")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "/metrics is served only on its own listener")
	resp, _ = get(t, c, "http://"+s.MetricsAddr().String()+"/healthz")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "the metrics listener serves nothing else")
	resp, _ = get(t, c, "http://"+s.Addr().String()+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// Run drains in order: the answer given before the stop is reported as usage
// by the final report, sent after the API stopped and before Run returns.
func TestServerDrainsThenSendsLastUsageReport(t *testing.T) {
	f := newFakeVault(t)
	opsRole(f)
	key, id := f.issue("k", "ops", keyOpts{})
	logs := &lockedBuffer{}
	s, stop := runServer(t, f, func(c *Config) {
		c.UsageFlush = time.Hour
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info})
	}, ServerConfig{})
	req, err := http.NewRequest(http.MethodGet, "http://"+s.Addr().String()+"/v1/auth", nil)
	require.NoError(t, err)
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, f.usageWrites(), "nothing reported before the stop (flush every hour)")

	require.NoError(t, stop())
	var reported []string
	for _, batch := range f.usageWrites() {
		for _, u := range batch {
			reported = append(reported, u.KeyID)
		}
	}
	assert.Contains(t, reported, id, "the last usage report is sent on shutdown")
	_, err = http.Get("http://" + s.Addr().String() + "/healthz")
	assert.Error(t, err, "the listener is closed")
	assert.Contains(t, logs.String(), "no -trusted-proxies", "forward-auth without trusted proxies is warned about")
}
