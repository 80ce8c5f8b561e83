package backend

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
)

// localSealer is an in-process stand-in for transit in unit tests: data keys are
// wrapped under a KEK held in memory, in the same "vault:vN:" shape.
type localSealer struct {
	mu      sync.Mutex
	kek     cipher.AEAD
	version int
	dek     []byte
	wrapped string
	seals   int
}

func newLocalSealer() *localSealer {
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	block, _ := aes.NewCipher(kek)
	aead, _ := cipher.NewGCM(block)
	s := &localSealer{kek: aead, version: 1}
	s.dek = make([]byte, envelope.DEKSize)
	_, _ = rand.Read(s.dek)
	s.wrapped = s.wrap(s.dek)
	return s
}

func (s *localSealer) wrap(dek []byte) string {
	nonce := make([]byte, s.kek.NonceSize())
	_, _ = rand.Read(nonce)
	ct := s.kek.Seal(nonce, nonce, dek, nil)
	return fmt.Sprintf("vault:v%d:%s", s.version, base64.StdEncoding.EncodeToString(ct))
}

// unwrap opens a wrapped data key, as transit/decrypt would for a verifier.
func (s *localSealer) unwrap(w string) ([]byte, error) {
	parts := strings.SplitN(w, ":", 3)
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	n := s.kek.NonceSize()
	return s.kek.Open(nil, raw[:n], raw[n:], nil)
}

func (s *localSealer) Seal(_ context.Context, aad, plaintext []byte) (envelope.Sealed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seals++
	return envelope.Seal(s.dek, s.wrapped, aad, plaintext)
}

func (s *localSealer) Rewrap(_ context.Context, wrapped []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(wrapped))
	for i, w := range wrapped {
		dek, err := s.unwrap(w)
		if err != nil {
			return nil, err
		}
		out[i] = s.wrap(dek)
	}
	return out, nil
}

func (s *localSealer) Close() {}

// Forget starts a new data key under the current KEK version.
func (s *localSealer) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	dek := make([]byte, envelope.DEKSize)
	_, _ = rand.Read(dek)
	s.dek = dek
	s.wrapped = s.wrap(s.dek)
}

// rotate moves the in-memory KEK to a new version, like transit rotate.
func (s *localSealer) rotate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
}

type testEnv struct {
	t      testing.TB
	b      *Backend
	s      logical.Storage
	sealer *localSealer
}

func newTestEnv(t *testing.T) *testEnv { return newTestEnvWith(t, nil) }

func newTestEnvWith(t testing.TB, tweak func(*logical.BackendConfig)) *testEnv {
	t.Helper()
	sealer := newLocalSealer()
	b := New(func(context.Context, *Config, hclog.Logger) (Sealer, error) { return sealer, nil })
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	conf.Logger = hclog.NewNullLogger()
	if tweak != nil {
		tweak(conf)
	}
	require.NoError(t, b.Setup(context.Background(), conf))
	require.NoError(t, b.Initialize(context.Background(), &logical.InitializationRequest{Storage: conf.StorageView}))
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return &testEnv{t: t, b: b, s: conf.StorageView, sealer: sealer}
}

// configured returns an env with config written and a role "dev".
func configured(t *testing.T) *testEnv { return configuredWith(t, nil) }

// configuredWith is configured on a backend whose config tweak changed.
func configuredWith(t *testing.T, tweak func(*logical.BackendConfig)) *testEnv {
	e := newTestEnvWith(t, tweak)
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"vault_addr": "http://127.0.0.1:8200", "token": "t"})
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{
		"permissions": "clusters:read,clusters:write", "allowed_workspaces": "prod,dev-*", "max_ttl": "2160h",
	})
	return e
}

func (e *testEnv) do(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data, Storage: e.s, DisplayName: "tester", EntityID: "",
	})
	if path == "lookup" || strings.HasPrefix(path, "lookup/") || path == "changes" {
		resp = asVaultSees(e.t, resp) // the paths that answer with responseData
	}
	return resp, err
}

// asVaultSees turns the typed values a hot path leaves in Data
// (responseData) into what Vault decodes from the JSON the SDK sends it (a
// plain json.Unmarshal, as the SDK's ProtoResponseToLogicalResponse does), so
// a test reads every answer as a client would.
func asVaultSees(t testing.TB, resp *logical.Response) *logical.Response {
	t.Helper()
	if resp == nil {
		return nil
	}
	raw, err := json.Marshal(resp.Data)
	require.NoError(t, err)
	var data map[string]interface{}
	require.NoError(t, json.Unmarshal(raw, &data))
	resp.Data = data
	return resp
}

func (e *testEnv) mustOK(op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	e.t.Helper()
	resp, err := e.do(op, path, data)
	require.NoError(e.t, err, "%s %s", op, path)
	if resp != nil {
		require.False(e.t, resp.IsError(), "%s %s: %v", op, path, resp.Error())
	}
	return resp
}

// mustFail asserts a clean 400 whose message contains want.
func (e *testEnv) mustFail(op logical.Operation, path string, data map[string]interface{}, want string) {
	e.t.Helper()
	resp, err := e.do(op, path, data)
	require.NotNil(e.t, resp, "%s %s: want an error response", op, path)
	require.True(e.t, resp.IsError(), "%s %s: want an error, got %v", op, path, resp.Data)
	if err != nil { // an error response alone is also a 400
		require.ErrorIs(e.t, err, logical.ErrInvalidRequest)
	}
	require.Contains(e.t, strings.ToLower(resp.Error().Error()), strings.ToLower(want))
}

// snapshot returns every storage entry, for "bad input changes nothing".
func (e *testEnv) snapshot() map[string]string {
	e.t.Helper()
	keys, err := logical.CollectKeys(context.Background(), e.s)
	require.NoError(e.t, err)
	out := map[string]string{}
	for _, k := range keys {
		entry, err := e.s.Get(context.Background(), k)
		require.NoError(e.t, err)
		out[k] = string(entry.Value)
	}
	return out
}

func (e *testEnv) issue(name string, data map[string]interface{}) map[string]interface{} {
	e.t.Helper()
	if data == nil {
		data = map[string]interface{}{}
	}
	if _, ok := data["role"]; !ok {
		data["role"] = "dev"
	}
	return e.mustOK(logical.CreateOperation, "tenants/acme/keys/"+name, data).Data
}

// tidy starts a tidy run and waits (bounded) for that run to finish, as a
// caller of the background tidy does: write, then read until the last run is
// the one started. It returns the run's fields.
func (e *testEnv) tidy() map[string]interface{} {
	e.t.Helper()
	var run interface{}
	var last map[string]interface{}
	require.Eventually(e.t, func() bool {
		if run == nil { // another run may be going: start ours once it ends
			if d := e.mustOK(logical.UpdateOperation, "tidy", nil).Data; d["started"] == true {
				run = d["run"]
			}
			return false
		}
		last = e.mustOK(logical.ReadOperation, "tidy", nil).Data
		return last["run"] == run
	}, 10*time.Second, time.Millisecond, "tidy run did not finish")
	require.Nil(e.t, last["error"], "tidy run failed")
	return last
}
