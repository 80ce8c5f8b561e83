package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/token"
)

var lookupCount = regexp.MustCompile(`(?m)^apikeys_verifier_vault_request_duration_seconds_count\{[^}]*op="lookup"[^}]*\} (\d+)`)

// TestHostileClients: a flood of well-formed unknown keys, slow clients,
// oversized bodies and odd headers: no crash, no 5xx, Vault not overwhelmed.
func TestHostileClients(t *testing.T) {
	v := vaulttest.Start(t)
	_, err := v.Client.Logical().Write("apikeys/roles/r", map[string]interface{}{"permissions": "*"})
	require.NoError(t, err)
	good := issue(t, v, "good", map[string]interface{}{"role": "r"})
	ver := startVerifier(t, v, v.Addr)
	require.Equal(t, "VALID", ver.code(t, good))

	t.Run("flood of unknown key ids", func(t *testing.T) {
		const n, workers = 3000, 32
		var next atomic.Int64
		var notFound, other atomic.Int64
		var healthMax atomic.Int64
		stop := make(chan struct{})
		go func() { // Vault must keep answering promptly during the flood
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				start := time.Now()
				if _, err := v.Client.Sys().Health(); err == nil {
					if d := time.Since(start).Milliseconds(); d > healthMax.Load() {
						healthMax.Store(d)
					}
				}
			}
		}()
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= n {
					tok, err := token.Generate(token.DefaultPrefix)
					require.NoError(t, err)
					got := ver.verify(t, map[string]interface{}{"key": tok.String()})
					if got.Status == http.StatusOK && got.Code == "NOT_FOUND" {
						notFound.Add(1)
					} else {
						other.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		assert.EqualValues(t, n, notFound.Load(), "every unknown key answers NOT_FOUND (others: %d)", other.Load())
		m := lookupCount.FindStringSubmatch(fetch(t, ver.URL+"/metrics"))
		require.NotNil(t, m, "lookup request counter missing from /metrics")
		lookups, _ := strconv.Atoi(m[1])
		t.Logf("%d unknown keys took %d batched lookup requests to Vault; slowest Vault health check during the flood: %d ms", n, lookups, healthMax.Load())
		assert.Less(t, lookups, n, "misses must be batched, not one Vault request each")
		assert.Less(t, healthMax.Load(), int64(2000), "Vault must stay responsive")
		assert.Equal(t, "VALID", ver.code(t, good))
	})

	t.Run("slow client is cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(ver.URL, "http://"))
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.Write([]byte("POST /v1/verify HTTP/1.1\r\nHost: x\r\n")) // never finishes its headers
		require.NoError(t, err)
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = bufio.NewReader(conn).ReadByte()
		assert.Error(t, err, "the server must close a connection that never sends its headers")
		assert.Less(t, time.Since(start), 15*time.Second)
		assert.Equal(t, "VALID", ver.code(t, good), "other clients are unaffected")
	})

	t.Run("oversized and odd requests", func(t *testing.T) {
		big := `{"key":"` + strings.Repeat("a", 200000) + `"}`
		resp, err := httpClient.Post(ver.URL+"/v1/verify", "application/json", strings.NewReader(big))
		require.NoError(t, err)
		resp.Body.Close()
		assert.True(t, resp.StatusCode >= 400 && resp.StatusCode < 500, "oversized body: %d", resp.StatusCode)
		for i, hv := range []string{
			"Bearer " + good + "\r\nX-Apikey-Id: forged", "Bearer ", "Bearer " + strings.Repeat("x", 8000),
			"Basic " + good, "bearer " + good, "Bearer\t" + good, "Bearer " + good + " extra", "Bearer ключ",
		} {
			req, _ := http.NewRequest(http.MethodGet, ver.URL+"/v1/auth", nil)
			req.Header["Authorization"] = []string{hv}
			resp, err := httpClient.Do(req)
			if err != nil {
				continue // the client refused to send an invalid header: nothing reached the server
			}
			resp.Body.Close()
			assert.Less(t, resp.StatusCode, 500, "header %d", i)
			assert.NotEqual(t, "forged", resp.Header.Get("X-Apikey-Id"))
		}
		for i, body := range []string{"", "null", "[]", `{"key":1}`, `{"key":"` + good + `","client_ip":"not-an-ip"}`,
			`{"key":"` + good + `","permissions":"x"}`, "{\"key\":\"\u0000\"}", `{"key":"` + good + `"}{"key":"x"}`} {
			resp, err := httpClient.Post(ver.URL+"/v1/verify", "application/json", strings.NewReader(body))
			require.NoError(t, err)
			resp.Body.Close()
			assert.Less(t, resp.StatusCode, 500, fmt.Sprintf("body %d", i))
		}
	})
}
