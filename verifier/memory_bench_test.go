package verifier

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// BenchmarkCacheMillionKeys fills the cache with 1,000,000 distinct keys the
// way the miss path does — a lookup answer decoded from JSON, its sealed
// digest opened with AES-GCM, the record inserted — and reports the process
// RSS and heap per key. (It does not go through Vault: a million real
// issuances take longer than a benchmark run.)
func BenchmarkCacheMillionKeys(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		before := rssBytes()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		c := newCache(n + n/10) // shards fill unevenly: room for all n
		dek := make([]byte, envelope.DEKSize)
		_, _ = rand.Read(dek)
		exp := time.Now().Add(720 * time.Hour).UTC()
		for i := 0; i < n; i++ {
			tok, err := token.Generate(token.DefaultPrefix)
			if err != nil {
				b.Fatal(err)
			}
			d := tok.Digest()
			sealed, err := envelope.Seal(dek, "vault:v1:"+strings.Repeat("w", 64), envelope.AAD("mount-id-123456", tok.KeyID), d[:])
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := json.Marshal(wire.Entry{
				KeyID: tok.KeyID, Status: wire.StatusActive, Name: "key-" + strconv.Itoa(i), Role: "ops", Workspace: "prod",
				Permissions: []string{"clusters:read", "clusters:write"}, AllowedWorkspaces: []string{"prod", "dev-*"},
				ExpiresAt: &exp, Metadata: map[string]string{"team": "infra"}, MountID: "mount-id-123456", Sealed: &sealed, Seq: uint64(i),
			})
			var e wire.Entry
			if err := json.Unmarshal(raw, &e); err != nil {
				b.Fatal(err)
			}
			rec, err := newRecord(e, dek)
			if err != nil {
				b.Fatal(err)
			}
			c.Insert(rec, e.Seq)
		}
		if c.Len() != n {
			b.Fatalf("cache holds %d records, want %d", c.Len(), n)
		}
		debug.FreeOSMemory() // return the fill's garbage, as a long-running process would over time
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(rssBytes())/(1<<20), "MB-rss")
		b.ReportMetric(float64(rssBytes()-before)/n, "rss-bytes/key")
		b.ReportMetric(float64(ms.HeapInuse-ms0.HeapInuse)/n, "heap-bytes/key")
		runtime.KeepAlive(c)
	}
}

// rssBytes reads the resident set size of this process (Linux).
func rssBytes() uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb uint64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
