package verifier

import (
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// memoryKeys is how many keys BenchmarkCacheMillionKeys caches; scripts/bench
// lowers it for smoke runs (go test … -args -memory-keys N).
var memoryKeys = flag.Int("memory-keys", 1_000_000, "keys cached by BenchmarkCacheMillionKeys")

// BenchmarkCacheMillionKeys fills the cache with 1,000,000 distinct keys the
// way the miss path does — a lookup answer decoded from JSON, its sealed
// digest opened with AES-GCM, the cached key inserted — and reports the process
// RSS and heap per key. (It does not go through Vault: a million real
// issuances take longer than a benchmark run.) Two shapes: the bench's keys
// (16-character names, no metadata, role values shared) and the same with 200
// bytes of per-key metadata. `make bench` reports both.
func BenchmarkCacheMillionKeys(b *testing.B) {
	b.Run("shape=bench", func(b *testing.B) { benchCacheMemory(b, *memoryKeys, nil) })
	b.Run("shape=metadata-200B", func(b *testing.B) {
		benchCacheMemory(b, *memoryKeys, func(i int) map[string]string {
			m := make(map[string]string, 4)
			for j := 0; j < 4; j++ { // 4 × (10-byte name + 40-byte value) = 200 bytes
				m[fmt.Sprintf("meta-key-%d", j)] = fmt.Sprintf("%-40s", fmt.Sprintf("value-%d-of-key-%d", j, i))
			}
			return m
		})
	})
}

func benchCacheMemory(b *testing.B, n int, metadata func(i int) map[string]string) {
	for b.Loop() {
		debug.FreeOSMemory() // start from what the process really holds
		before := rssBytes()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		c := newCache(2 * n) // shards fill unevenly: room for all n (maps grow with use, not size)
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
			var meta map[string]string
			if metadata != nil {
				meta = metadata(i)
			}
			raw, _ := json.Marshal(wire.Entry{
				KeyID: tok.KeyID, Status: wire.StatusActive, Name: fmt.Sprintf("key-%012d", i), Role: "bench",
				Permissions: []string{"clusters:read", "clusters:write"}, AllowedWorkspaces: []string{"*"},
				ExpiresAt: &exp, Metadata: meta, MountID: "mount-id-123456", Sealed: &sealed, Seq: uint64(i),
			})
			var e wire.Entry
			if err := json.Unmarshal(raw, &e); err != nil {
				b.Fatal(err)
			}
			k, err := newCachedKey(e, dek)
			if err != nil {
				b.Fatal(err)
			}
			c.Insert(k, e.Seq)
		}
		if c.Len() != n {
			b.Fatalf("cache holds %d keys, want %d", c.Len(), n)
		}
		debug.FreeOSMemory() // return the fill's garbage, as a long-running process would over time
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(rssBytes())/(1<<20), "MB-rss")
		b.ReportMetric((float64(rssBytes())-float64(before))/float64(n), "rss-bytes/key")
		b.ReportMetric((float64(ms.HeapInuse)-float64(ms0.HeapInuse))/float64(n), "heap-bytes/key")
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
