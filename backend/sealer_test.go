package backend

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
)

// fakeTransit answers datakey/plaintext like transit, on loopback, remembering
// every data key it minted. hold, when set, parks the next datakey request
// (after it read the key version) until released.
type fakeTransit struct {
	mu      sync.Mutex
	version int
	deks    map[string][]byte
	hold    chan struct{}
	arrived chan struct{}
	srv     *httptest.Server
}

func newFakeTransit(t *testing.T) *fakeTransit {
	f := &fakeTransit{version: 1, deks: map[string][]byte{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// newFakeTransitTLS is a fakeTransit over https, with httptest's own CA.
func newFakeTransitTLS(t *testing.T) *fakeTransit {
	f := &fakeTransit{version: 1, deks: map[string][]byte{}}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// caPEM is the PEM of the fake's certificate (self-signed: its own CA).
func (f *fakeTransit) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}))
}

func (f *fakeTransit) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/datakey/plaintext/") {
		_ = json.NewEncoder(w).Encode(map[string]interface{}{"data": map[string]interface{}{"ttl": 0, "renewable": false}})
		return
	}
	f.mu.Lock()
	version, hold, arrived := f.version, f.hold, f.arrived
	f.hold, f.arrived = nil, nil
	dek := make([]byte, envelope.DEKSize)
	_, _ = rand.Read(dek)
	wrapped := fmt.Sprintf("vault:v%d:%d", version, len(f.deks))
	f.deks[wrapped] = dek
	f.mu.Unlock()
	if hold != nil {
		close(arrived)
		<-hold
	}
	_ = json.NewEncoder(w).Encode(map[string]interface{}{"data": map[string]interface{}{
		"plaintext": base64.StdEncoding.EncodeToString(dek), "ciphertext": wrapped}})
}

func (f *fakeTransit) dek(wrapped string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deks[wrapped]
}

func (f *fakeTransit) sealer(t *testing.T) *TransitSealer {
	t.Helper()
	cfg := defaultConfig()
	cfg.VaultAddr, cfg.Token = f.srv.URL, "t"
	s, err := NewTransitSealer(context.Background(), cfg, hclog.NewNullLogger())
	require.NoError(t, err)
	return s.(*TransitSealer)
}

// A config write closes the sealer (zeroing its data keys) while seals are in
// flight: each seal must still use the real key (run with -race).
func TestSealerCloseDuringSeal(t *testing.T) {
	ft := newFakeTransit(t)
	aad := []byte("aad")
	for round := 0; round < 20; round++ {
		s := ft.sealer(t)
		var wg, started sync.WaitGroup
		var closed atomic.Bool
		for g := 0; g < 4; g++ {
			wg.Add(1)
			started.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					sealed, err := s.Seal(context.Background(), aad, []byte("digest"))
					if i == 0 {
						started.Done()
					}
					if err == nil {
						pt, err := envelope.Open(ft.dek(sealed.WrappedDEK), sealed, aad)
						if assert.NoError(t, err, "sealed under a zeroed data key") {
							assert.Equal(t, "digest", string(pt))
						}
					} // a seal after Close may fail; it must never be wrong
					if closed.Load() {
						return
					}
				}
			}()
		}
		started.Wait() // seals are in flight
		s.Close()
		closed.Store(true)
		wg.Wait()
	}
}

// A refill that fetched a data key before a KEK rotation must not install it
// after rewrap's Forget: new records would be wrapped under the old version.
func TestSealerRefillDoesNotInstallPreRotationKey(t *testing.T) {
	ft := newFakeTransit(t)
	s := ft.sealer(t)
	defer s.Close()

	hold, arrived := make(chan struct{}), make(chan struct{})
	ft.mu.Lock()
	ft.hold, ft.arrived = hold, arrived
	ft.mu.Unlock()
	before := s.refills.Load()
	s.Forget()   // wakes the refill, which fetches a v1 key and is held
	<-arrived    // the v1 key is minted; the refill waits for the answer
	ft.mu.Lock() // transit/keys/apikeys/rotate
	ft.version = 2
	ft.mu.Unlock()
	s.Forget() // apikeys/rewrap
	close(hold)
	// Wait until the refill has dealt with the v1 key (a bounded deadlock guard).
	deadline := time.Now().Add(10 * time.Second)
	for s.refills.Load() == before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	require.Greater(t, s.refills.Load(), before)

	sealed, err := s.Seal(context.Background(), []byte("aad"), []byte("digest"))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(sealed.WrappedDEK, "vault:v2:"), "sealed under %s, minted before the rotation", sealed.WrappedDEK)
}

// Transit over https: the plugin trusts the server only through ca_cert.
func TestTransitOverTLSWithCACert(t *testing.T) {
	f := newFakeTransitTLS(t)
	cfg := defaultConfig()
	cfg.VaultAddr, cfg.Token = f.srv.URL, "t"
	_, err := NewTransitSealer(context.Background(), cfg, hclog.NewNullLogger())
	require.Error(t, err, "an unknown CA is refused")
	assert.Contains(t, err.Error(), "certificate")

	cfg.CACert = f.caPEM()
	require.Empty(t, cfg.validate())
	s, err := NewTransitSealer(context.Background(), cfg, hclog.NewNullLogger())
	require.NoError(t, err)
	defer s.Close()
	sealed, err := s.Seal(context.Background(), []byte("aad"), []byte("digest"))
	require.NoError(t, err)
	assert.NotNil(t, f.dek(sealed.WrappedDEK), "the data key came from the TLS transit")
}
