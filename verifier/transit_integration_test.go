package verifier

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// garbageDEK is a wrapped data key no transit key unwraps.
const garbageDEK = "vault:v1:Z2FyYmFnZQ=="

// decryptShape is what the verifier relies on in a transit decrypt answer.
type decryptShape struct {
	Status  int
	Results []struct{ Plaintext, Error bool }
}

func postDecrypt(t *testing.T, url, tok string, body map[string]any) decryptShape {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPut, url+"/v1/transit/decrypt/apikeys", bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("X-Vault-Token", tok)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out struct {
		Data struct {
			Results []struct {
				Plaintext string `json:"plaintext"`
				Error     string `json:"error"`
			} `json:"batch_results"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	shape := decryptShape{Status: resp.StatusCode}
	for _, r := range out.Data.Results {
		shape.Results = append(shape.Results, struct{ Plaintext, Error bool }{r.Plaintext != "", r.Error != ""})
	}
	return shape
}

// TestIntegrationFakeDecryptMatchesTransit checks the fake's transit decrypt
// against Vault 1.19's (issue 14, defect 6): a batch with one bad item is a 400
// for the whole batch, still carrying every item's result;
// partial_failure_response_code turns a mixed batch into that code, but not a
// batch where every item failed. Then the verifier's Decrypt on real transit
// fails only the bad item.
func TestIntegrationFakeDecryptMatchesTransit(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Vault dev server")
	}
	vt := vaulttest.Start(t, vaulttest.WithoutEngine())
	root := vt.Client.Logical()
	require.NoError(t, vt.Client.Sys().Mount("transit", &vaultapi.MountInput{Type: "transit"}))
	_, err := root.Write("transit/keys/apikeys", nil)
	require.NoError(t, err)
	mk := func() (string, []byte) {
		s, err := root.Write("transit/datakey/plaintext/apikeys", nil)
		require.NoError(t, err)
		dek, err := base64.StdEncoding.DecodeString(s.Data["plaintext"].(string))
		require.NoError(t, err)
		return s.Data["ciphertext"].(string), dek
	}
	good1, dek1 := mk()
	good2, dek2 := mk()

	f := newFakeVault(t)
	item := func(c string) map[string]any { return map[string]any{"ciphertext": c} }
	cases := map[string]func(good string) map[string]any{
		"all good": func(g string) map[string]any {
			return map[string]any{"batch_input": []any{item(g), item(g)}}
		},
		"one bad": func(g string) map[string]any {
			return map[string]any{"batch_input": []any{item(g), item(garbageDEK)}}
		},
		"one bad, partial code 200": func(g string) map[string]any {
			return map[string]any{"batch_input": []any{item(g), item(garbageDEK)}, "partial_failure_response_code": 200}
		},
		"all bad, partial code 200": func(string) map[string]any {
			return map[string]any{"batch_input": []any{item(garbageDEK), item(garbageDEK)}, "partial_failure_response_code": 200}
		},
	}
	for name, body := range cases {
		real := postDecrypt(t, vt.Addr, vt.RootToken, body(good1))
		fake := postDecrypt(t, f.srv.URL, f.token, body(f.wrapped))
		assert.Equal(t, real, fake, "%s: the fake answers as transit does", name)
	}
	assert.Equal(t, http.StatusBadRequest, postDecrypt(t, vt.Addr, vt.RootToken, cases["one bad"](good1)).Status,
		"transit fails the whole batch for one bad item")

	cfg := Config{VaultAddrs: []string{vt.Addr}}
	cfg.setDefaults()
	va, err := newVaultAPI(&cfg, newMetrics())
	require.NoError(t, err)
	va.setToken(vt.RootToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ask := range [][]string{{good1, garbageDEK, good2}, {garbageDEK}} {
		keys, err := va.Decrypt(ctx, ask)
		require.NoError(t, err, "one bad item does not fail the batch")
		require.Len(t, keys, len(ask))
		for i, w := range ask {
			switch w {
			case good1:
				assert.Equal(t, dek1, keys[i])
			case good2:
				assert.Equal(t, dek2, keys[i])
			default:
				assert.Nil(t, keys[i], "the bad item alone fails")
			}
		}
	}
	assert.Len(t, dek1, envelope.DEKSize)
}
