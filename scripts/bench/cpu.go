package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Processor time per load. wrk measures what a load delivers on this machine,
// where Vault, its plugins, the verifier and wrk itself share two cores. The
// processor time Vault (with its plugin processes) spent during a run says what
// a request costs Vault alone: the part a fleet of verifiers on their own hosts
// shares, and the figure to size Vault by.

// userHZ is the unit of the times in /proc/<pid>/stat: USER_HZ, which the
// kernel fixes at 100 for that interface.
const userHZ = 100

// vaultMeter reads the processor time of one Vault server process and of every
// process it has started (its plugins).
type vaultMeter struct{ pid int }

// used is the processor time, user and system, that Vault and its plugin
// processes have spent so far: Vault's own, its live children's, and that of
// children it has reaped (a plugin that ended keeps counting). A process it
// cannot read counts as nothing.
func (m vaultMeter) used() time.Duration {
	st, err := readStat(m.pid)
	if err != nil {
		return 0
	}
	total := st.cpu + st.reaped
	for _, pid := range childrenOf(m.pid) {
		total += procCPU(pid)
	}
	return total
}

// storageWrites is how many writes (puts and deletes) Vault's storage barrier
// has taken so far, from Vault's own telemetry: every entry Vault or a plugin
// stores or deletes passes through it. -1 when it cannot be read.
func storageWrites(addr, token string) float64 {
	samples, err := scrape(addr+"/v1/sys/metrics?format=prometheus", token)
	if err != nil {
		return -1
	}
	return samples["vault_barrier_put_count"] + samples["vault_barrier_delete_count"]
}

// perRequestCount is n per request, or "" when it was not measured.
func perRequestCount(n float64, requests int64) string {
	if n < 0 || requests <= 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", n/float64(requests))
}

// procCPU is the processor time of pid (0 when it cannot be read).
func procCPU(pid int) time.Duration {
	st, err := readStat(pid)
	if err != nil {
		return 0
	}
	return st.cpu
}

func readStat(pid int) (procStat, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(string(raw))
}

// childrenOf lists the processes whose parent is ppid.
func childrenOf(ppid int) []int {
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile
		}
		st, err := parseStat(string(raw))
		if err == nil && st.ppid == ppid {
			out = append(out, st.pid)
		}
	}
	return out
}

type procStat struct {
	pid, ppid int
	cpu       time.Duration // utime + stime
	reaped    time.Duration // cutime + cstime: of children waited for
}

// parseStat reads a /proc/<pid>/stat line: "pid (comm) state ppid … utime
// stime …". The command name may hold spaces and parentheses, so the fields
// are counted from the last ")".
func parseStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 1 || end < open {
		return procStat{}, fmt.Errorf("not a /proc stat line")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("stat pid: %w", err)
	}
	f := strings.Fields(line[end+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("stat line has %d fields after the name, want 15 or more", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("stat ppid: %w", err)
	}
	var ticks [4]int64 // utime, stime, cutime, cstime: fields 14 to 17
	for i := range ticks {
		if ticks[i], err = strconv.ParseInt(f[11+i], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("stat times: %w", err)
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
	return procStat{pid: pid, ppid: ppid, cpu: tick(ticks[0] + ticks[1]), reaped: tick(ticks[2] + ticks[3])}, nil
}

// perRequest is cpu spread over n requests ("" when nothing was measured).
func perRequest(cpu time.Duration, n int64) string {
	if cpu <= 0 || n <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f µs", float64(cpu.Microseconds())/float64(n))
}

// usageKeys is how many keys the usage measurement reports, in writes of
// wire.MaxUsageBatch as the verifier sends them (verifier/usage.go), one at a
// time.
const usageKeys = 3000

// usageCost is what reporting key use costs Vault: the plugin writes one
// storage entry per key in a report, so cold traffic (every key new) pays it
// once per key, on top of the lookups the cold load measures.
type usageCost struct {
	keys     int
	vaultCPU time.Duration
	elapsed  time.Duration
}

// measureUsage reports one use of each of up to usageKeys keys to the plugin
// with the verifier's token, in writes of wire.MaxUsageBatch, and meters Vault.
func measureUsage(addr, verifierToken string, meter vaultMeter, keys []issued) (usageCost, error) {
	keys = keys[:min(len(keys), usageKeys)]
	h := http.Header{"X-Vault-Token": {verifierToken}}
	at := time.Now().UTC().Format(time.RFC3339Nano)
	out := usageCost{keys: len(keys)}
	start, before := time.Now(), meter.used()
	for len(keys) > 0 {
		n := min(len(keys), wire.MaxUsageBatch)
		report := make([]map[string]interface{}, 0, n)
		for _, k := range keys[:n] {
			tok, err := token.Parse(k.key)
			if err != nil {
				return out, err
			}
			report = append(report, map[string]interface{}{"key_id": tok.KeyID, "count": 1, "last_used_at": at, "last_used_from": "127.0.0.1"})
		}
		if _, err := vaultDo(addr, "PUT", "apikeys/usage", h, map[string]interface{}{"usage": report}); err != nil {
			return out, err
		}
		keys = keys[n:]
	}
	out.vaultCPU, out.elapsed = meter.used()-before, time.Since(start)
	return out, nil
}
