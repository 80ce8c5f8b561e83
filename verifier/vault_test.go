package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

// countingVault answers every request with status and counts them.
func countingVault(t *testing.T, status int, body string) (string, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

func newTestVaultAPI(t *testing.T, addrs ...string) *vaultAPI {
	v, err := newVaultAPI(&Config{VaultAddrs: addrs, Mount: "apikeys", Logger: hclog.NewNullLogger()}, newMetrics())
	require.NoError(t, err)
	return v
}

func TestVaultCallMovesOnWhenNoVaultAnswers(t *testing.T) {
	up, n := countingVault(t, http.StatusOK, `{"data":{"seq":1,"entries":[]}}`)
	v := newTestVaultAPI(t, deadAddr(t), up)
	var ch wire.Changes
	err := v.call(context.Background(), "changes", http.MethodGet, "apikeys/changes", nil, nil, into(&ch))
	require.NoError(t, err)
	assert.Equal(t, int32(1), n.Load())
	assert.Equal(t, 1, v.ring.Current(), "the next call starts at the address that answered")
}

// Any Vault answer is final for the verifier, a 503 included: the request may
// have reached a node that acted on it (usage reports are not idempotent).
func TestVaultCallTakesAnyAnswerAsFinal(t *testing.T) {
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusForbidden} {
		first, n1 := countingVault(t, status, `{"errors":["no"]}`)
		second, n2 := countingVault(t, http.StatusOK, `{"data":{}}`)
		v := newTestVaultAPI(t, first, second)
		var denied atomic.Int32
		v.denied = func() { denied.Add(1) }
		err := v.write(context.Background(), "usage", "apikeys/usage", map[string]any{}, nil)
		require.Error(t, err, "status %d", status)
		assert.Equal(t, int32(1), n1.Load(), "status %d", status)
		assert.Equal(t, int32(0), n2.Load(), "status %d: the next address must not be tried", status)
		assert.Equal(t, status == http.StatusForbidden, denied.Load() == 1, "status %d: only a 403 asks for a new token", status)
	}
}

// Two attempts per call, but an address that did not answer is left behind,
// so with the first two of three down the third answers on the next call.
func TestVaultCallReachesEveryAddressOverCalls(t *testing.T) {
	up, n := countingVault(t, http.StatusOK, `{"data":{}}`)
	v := newTestVaultAPI(t, deadAddr(t), deadAddr(t), up)
	ctx := context.Background()
	err := v.write(ctx, "usage", "apikeys/usage", map[string]any{}, nil)
	require.Error(t, err)
	assert.Equal(t, int32(0), n.Load())
	err = v.write(ctx, "usage", "apikeys/usage", map[string]any{}, nil)
	require.NoError(t, err)
	assert.Equal(t, int32(1), n.Load())
}

// Answers are decoded straight into the wire shapes: a missing data object is
// an error, and a seq beyond float64's exact range keeps every digit.
func TestVaultCallDecodesData(t *testing.T) {
	ctx := context.Background()
	for _, body := range []string{`{"data":null}`, `{}`, `{"warnings":["x"]}`} {
		addr, _ := countingVault(t, http.StatusOK, body)
		_, err := newTestVaultAPI(t, addr).Changes(ctx, 0, "", 0)
		require.ErrorContains(t, err, "response has no data", "body %s", body)
	}
	addr, _ := countingVault(t, http.StatusOK, `{"data":{"head":18446744073709551615,"changes":[{"seq":18446744073709551614,"key_id":"k","op":"revoked"}]}}`)
	ch, err := newTestVaultAPI(t, addr).Changes(ctx, 0, "", 0)
	require.NoError(t, err)
	assert.Equal(t, uint64(18446744073709551615), ch.Head)
	require.Len(t, ch.Changes, 1)
	assert.Equal(t, uint64(18446744073709551614), ch.Changes[0].Seq)
	addr, _ = countingVault(t, http.StatusOK, `{"data":"not an object"}`)
	_, err = newTestVaultAPI(t, addr).Changes(ctx, 0, "", 0)
	require.ErrorContains(t, err, "decode response data")
	addr, _ = countingVault(t, http.StatusOK, `["not an object"]`)
	_, err = newTestVaultAPI(t, addr).Changes(ctx, 0, "", 0)
	require.ErrorContains(t, err, "decode response: ")
}

// BenchmarkDecodeLookupAnswer decodes a lookup answer of 16 entries the three
// ways the verifier has: api.ParseSecret's generic map, then a JSON round trip
// into the wire shape (api-secret-map); the envelope's data as raw bytes, then
// those into the wire shape (two-pass); and now one typed pass (direct).
// Each step's before/after, measured in one run.
func BenchmarkDecodeLookupAnswer(b *testing.B) {
	batch := wire.Batch{Seq: 42}
	sealed := envelope.Sealed{WrappedDEK: "vault:v1:" + strings.Repeat("w", 80), V: 1, Nonce: strings.Repeat("n", 16), Ciphertext: strings.Repeat("c", 64)}
	for i := 0; i < 16; i++ {
		batch.Entries = append(batch.Entries, wire.Entry{KeyID: fmt.Sprintf("Key%013d", i), Status: wire.StatusActive, Tenant: "acme",
			Name: fmt.Sprintf("key-%d", i), Role: "bench", Permissions: []string{"clusters:read", "clusters:write"}, AllowedWorkspaces: []string{"*"},
			MountID: "mount-id", Seq: 42, Sealed: &sealed})
	}
	data, err := json.Marshal(map[string]any{"request_id": "r", "data": batch})
	require.NoError(b, err)
	b.Run("api-secret-map", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := api.ParseSecret(bytes.NewReader(data))
			require.NoError(b, err)
			raw, err := json.Marshal(s.Data)
			require.NoError(b, err)
			var out wire.Batch
			require.NoError(b, json.Unmarshal(raw, &out))
		}
	})
	b.Run("two-pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			answer, err := io.ReadAll(bytes.NewReader(data))
			require.NoError(b, err)
			var out wire.Batch
			require.NoError(b, decodeTwoPass(answer, &out))
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			answer, err := io.ReadAll(bytes.NewReader(data)) // as send reads the body
			require.NoError(b, err)
			var out wire.Batch
			require.NoError(b, decodeData(answer, &out))
		}
	})
}

// An answer that does not decode is final too: the next address is not asked.
func TestVaultCallUndecodableAnswerIsFinal(t *testing.T) {
	first, n1 := countingVault(t, http.StatusOK, `{"data":null}`)
	second, n2 := countingVault(t, http.StatusOK, `{"data":{"head":1,"changes":[]}}`)
	v := newTestVaultAPI(t, first, second)
	_, err := v.Changes(context.Background(), 0, "", 0)
	require.ErrorContains(t, err, "response has no data")
	assert.Equal(t, int32(1), n1.Load())
	assert.Equal(t, int32(0), n2.Load(), "the next address must not be tried")
	assert.Equal(t, 0, v.ring.Current(), "the ring stays on the address that answered")
}

// Every feed poll asks the plugin to hold pages of new keys for
// Config.FeedHoldCreated; a negative setting asks for no hold.
func TestChangesAsksForTheHold(t *testing.T) {
	var query atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query.Store(r.URL.Query())
		_, _ = w.Write([]byte(`{"data":{"changes":[],"head":3}}`))
	}))
	t.Cleanup(srv.Close)
	for hold, want := range map[time.Duration]string{DefaultFeedHoldCreated: "20ms", 1500 * time.Microsecond: "1.5ms", -1: ""} {
		cfg := &Config{VaultAddrs: []string{srv.URL}, FeedHoldCreated: hold}
		cfg.setDefaults()
		v, err := newVaultAPI(cfg, newMetrics())
		require.NoError(t, err)
		_, err = v.Changes(context.Background(), 2, "", time.Second)
		require.NoError(t, err)
		q := query.Load().(url.Values)
		assert.Equal(t, want, q.Get("hold_created"), "hold %s", hold)
		assert.Equal(t, "1000ms", q.Get("wait"))
	}
}

// lookupVault answers lookups with NOT_FOUND entries for the ids asked,
// refusing a method with refuse[method] (0: answered); onRead, when set, runs
// before a read is answered. It records each request's method and key_ids.
func lookupVault(t *testing.T, refuse map[string]int, onRead func()) (string, func() []string) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids, _ := lookupIDs(r)
		mu.Lock()
		seen = append(seen, r.Method+" "+strings.Join(ids, ","))
		mu.Unlock()
		if r.Method == http.MethodGet && onRead != nil {
			onRead()
		}
		w.Header().Set("Content-Type", "application/json")
		if code := refuse[r.Method]; code != 0 {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`{"errors":["refused"]}`))
			return
		}
		b := wire.Batch{Seq: 7}
		for _, id := range ids {
			b.Entries = append(b.Entries, wire.Entry{KeyID: id, Status: wire.StatusNotFound})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": b})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// lookupTestAPI is a vaultAPI whose warnings go to logs and whose 403 hook
// counts into kicks.
func lookupTestAPI(t *testing.T, addr string) (v *vaultAPI, logs *bytes.Buffer, kicks *atomic.Int32) {
	v = newTestVaultAPI(t, addr)
	logs, kicks = &bytes.Buffer{}, &atomic.Int32{}
	v.warn = hclog.New(&hclog.LoggerOptions{Output: logs}).Warn
	v.denied = func() { kicks.Add(1) }
	return v, logs, kicks
}

const idA, idB = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"

// A lookup is a read with the key_ids in the query: a write would cost a
// second round trip to the plugin (Vault's existence check).
func TestLookupIsARead(t *testing.T) {
	addr, seen := lookupVault(t, nil, nil)
	v := newTestVaultAPI(t, addr)
	for range 2 {
		b, err := v.Lookup(context.Background(), []string{idA, idB})
		require.NoError(t, err)
		require.Len(t, b.Entries, 2)
	}
	assert.Equal(t, []string{"GET " + idA + "," + idB, "GET " + idA + "," + idB}, seen())
}

// A token whose policy grants only the write (403 on the read), or a plugin
// without the read (405): the lookup is sent again as a write, and every later
// one as a write only, with one warning that names the cause. The refused read
// does not make the login replace the token.
func TestLookupFallsBackToAWrite(t *testing.T) {
	for code, cause := range map[int]string{http.StatusForbidden: "grant read", http.StatusMethodNotAllowed: "upgrade it"} {
		addr, seen := lookupVault(t, map[string]int{http.MethodGet: code}, nil)
		v, logs, kicks := lookupTestAPI(t, addr)
		for _, id := range []string{idA, idB} {
			b, err := v.Lookup(context.Background(), []string{id})
			require.NoError(t, err, "status %d", code)
			require.Equal(t, id, b.Entries[0].KeyID)
		}
		assert.Equal(t, []string{"GET " + idA, "PUT " + idA, "PUT " + idB}, seen(), "status %d", code)
		assert.Equal(t, 1, strings.Count(logs.String(), "lookups are sent as writes"), "status %d", code)
		assert.Contains(t, logs.String(), cause, "status %d", code)
		assert.Zero(t, kicks.Load(), "status %d: a refused read is not a refused token", code)

		// A new token may carry a policy that grants the read: it is tried again.
		v.setToken("another")
		_, err := v.Lookup(context.Background(), []string{idA})
		require.NoError(t, err)
		assert.Equal(t, []string{"GET " + idA, "PUT " + idA}, seen()[3:], "status %d", code)
	}
}

// When the write is refused too, the token is the trouble (expired, revoked),
// not its policy: the error stands, the login is asked for a new token, and
// the next lookup reads again.
func TestLookupKeepsReadingWhenTheWriteIsRefusedToo(t *testing.T) {
	addr, seen := lookupVault(t, map[string]int{http.MethodGet: http.StatusForbidden, http.MethodPut: http.StatusForbidden}, nil)
	v, _, kicks := lookupTestAPI(t, addr)
	for range 2 {
		_, err := v.Lookup(context.Background(), []string{idA})
		require.ErrorContains(t, err, "refused")
	}
	assert.Equal(t, []string{"GET " + idA, "PUT " + idA, "GET " + idA, "PUT " + idA}, seen())
	assert.Equal(t, int32(2), kicks.Load())
}

// Any other failure of the read is the lookup's answer: no write follows.
func TestLookupFailureOtherThanARefusalIsFinal(t *testing.T) {
	addr, seen := lookupVault(t, map[string]int{http.MethodGet: http.StatusInternalServerError}, nil)
	v, logs, _ := lookupTestAPI(t, addr)
	_, err := v.Lookup(context.Background(), []string{idA, idB})
	require.Error(t, err)
	assert.Equal(t, []string{"GET " + idA + "," + idB}, seen())
	assert.Empty(t, logs.String())
	assert.NotContains(t, err.Error(), idA, "the error names the path, not the key_ids in the query")
	assert.Contains(t, err.Error(), "/v1/apikeys/lookup")
}

// A read refused under one token and a write accepted under the next (the
// login replaced the token in between) says nothing about the policy: lookups
// stay reads.
func TestLookupRefusalAcrossATokenChangeKeepsReading(t *testing.T) {
	var v *vaultAPI
	addr, seen := lookupVault(t, map[string]int{http.MethodGet: http.StatusForbidden}, func() { v.setToken("next") })
	v, logs, _ := lookupTestAPI(t, addr)
	_, err := v.Lookup(context.Background(), []string{idA})
	require.NoError(t, err)
	_, _ = v.Lookup(context.Background(), []string{idB})
	assert.Equal(t, []string{"GET " + idA, "PUT " + idA, "GET " + idB, "PUT " + idB}, seen())
	assert.Empty(t, logs.String())
}
