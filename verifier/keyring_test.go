package verifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
)

// transitVault unwraps "vault:v1:<x>" to 32 bytes of x's first letter, and
// fails items that start with "vault:v1:bad". It counts decrypt calls.
func transitVault(t *testing.T) (string, *atomic.Int32) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		var in struct {
			Batch []struct{ Ciphertext string } `json:"batch_input"`
		}
		require.NoError(t, json.NewDecoder(r.Body).Decode(&in))
		var out []map[string]string
		for _, item := range in.Batch {
			x := strings.TrimPrefix(item.Ciphertext, "vault:v1:")
			if strings.HasPrefix(x, "bad") {
				out = append(out, map[string]string{"error": "cipher: message authentication failed"})
				continue
			}
			dek := []byte(strings.Repeat(x[:1], envelope.DEKSize))
			out = append(out, map[string]string{"plaintext": base64.StdEncoding.EncodeToString(dek)})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"data": map[string]any{"batch_results": out}})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

func TestKeyringAsksTransitOnlyForWhatItLacks(t *testing.T) {
	addr, calls := transitVault(t)
	k := newKeyring(2, newTestVaultAPI(t, addr))
	ctx := context.Background()

	got, err := k.Unwrap(ctx, []string{"vault:v1:a", "vault:v1:a", "vault:v1:bad"})
	require.NoError(t, err)
	assert.Equal(t, int32(1), calls.Load(), "one batch for every missing key")
	assert.Len(t, got["vault:v1:a"], envelope.DEKSize)
	assert.NotContains(t, got, "vault:v1:bad", "a key transit would not unwrap is absent")

	got, err = k.Unwrap(ctx, []string{"vault:v1:a"})
	require.NoError(t, err)
	assert.Equal(t, int32(1), calls.Load(), "a held key costs no call")
	assert.Equal(t, byte('a'), got["vault:v1:a"][0])

	_, err = k.Unwrap(ctx, []string{"vault:v1:b", "vault:v1:c"})
	require.NoError(t, err)
	assert.Equal(t, 2, k.Len(), "bounded by its limit")
}
