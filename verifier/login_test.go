package verifier

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// authVault answers the AppRole login and the token self-lookup, as Vault does.
func authVault(t *testing.T) (string, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/auth/approle/login":
			_, _ = w.Write([]byte(`{"auth":{"client_token":"s.approle","lease_duration":3600,"renewable":true}}`))
		case "/v1/auth/token/lookup-self":
			_, _ = w.Write([]byte(`{"data":{"ttl":0,"renewable":false}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func TestLoginAppRoleFailsOver(t *testing.T) {
	up, n := authVault(t)
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	require.NoError(t, os.WriteFile(secretFile, []byte("secret-id\n"), 0o600))
	cfg := &Config{VaultAddrs: []string{deadAddr(t), up}, AppRoleRoleID: "role", AppRoleSecretIDFile: secretFile, VaultTimeout: 5 * time.Second}
	v := newTestVaultAPI(t, cfg.VaultAddrs...)
	l := newLogin(cfg, v, hclog.NewNullLogger())

	s, _, err := l.authenticate(context.Background())
	require.NoError(t, err)
	require.NotNil(t, s.Auth)
	assert.Equal(t, int32(1), n.Load())
	for _, c := range v.clients {
		assert.Equal(t, "s.approle", c.Token(), "every address gets the token")
	}
}

func TestLoginTokenLookupFailsOver(t *testing.T) {
	up, n := authVault(t)
	cfg := &Config{VaultAddrs: []string{deadAddr(t), up}, VaultToken: "s.given", VaultTimeout: 5 * time.Second}
	v := newTestVaultAPI(t, cfg.VaultAddrs...)
	l := newLogin(cfg, v, hclog.NewNullLogger())

	s, _, err := l.authenticate(context.Background())
	require.NoError(t, err)
	// A token that never expires is described with an empty secret: no
	// watcher. nil would mean the lookup failed (it was retried elsewhere).
	require.NotNil(t, s)
	assert.Nil(t, s.Auth)
	assert.Equal(t, int32(1), n.Load())
}
