package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

const wrkInterrupted = `Running 60m test @ http://127.0.0.1:18931/v1/verify
  1 threads and 2 connections
  Latency Distribution
     50%  342.00us
     75%  442.00us
     90%  565.00us
     99%    1.55ms
  142 requests in 1.51s, 19.69KB read
  Non-2xx or 3xx responses: 3
Requests/sec:     94.05
Transfer/sec:     13.04KB
`

func TestParseWrk(t *testing.T) {
	l, err := parseWrk("x", wrkInterrupted)
	if err != nil {
		t.Fatal(err)
	}
	if l.rps != 94.05 || l.p50 != 342*time.Microsecond || l.p99 != 1550*time.Microsecond || l.requests != 142 || l.elapsed != 1510*time.Millisecond || l.errors != 3 {
		t.Fatalf("parsed %+v", l)
	}
	if _, err := parseWrk("x", "unable to connect"); err == nil {
		t.Fatal("output without Requests/sec was accepted")
	}
}

func statusOf(t *testing.T, r *results, goalPrefix string) string {
	t.Helper()
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, goalPrefix) {
			return status(tg.ok) + " " + tg.goal
		}
	}
	t.Fatalf("no target %q", goalPrefix)
	return ""
}

// targetNamed is the target whose goal starts with goalPrefix.
func targetNamed(t *testing.T, r *results, goalPrefix string) target {
	t.Helper()
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, goalPrefix) {
			return tg
		}
	}
	t.Fatalf("no target %q", goalPrefix)
	return target{}
}

func TestTargets(t *testing.T) {
	r := &results{loads: []load{
		{name: loadBare, rps: 10000, p99: 2 * time.Millisecond},
		{name: loadHot, rps: 8500, p99: 3 * time.Millisecond},
		{name: loadToken, rps: 2000},
		{name: loadCold, rps: 900},
		{name: loadKVRead, rps: 1000},
		{name: loadKVPol, rps: 800},
		{name: loadKVWrite, rps: 4000},
		{name: loadFloor, rps: 1500},
		{name: loadIssue, rps: 1100},
	}}
	r.propagation = propagationResult{applied: []time.Duration{time.Millisecond, 30 * time.Millisecond}, targetRate: 4250, background: load{rps: 4300}}
	r.memory = []memoryResult{{shape: "shape=bench", metrics: map[string]float64{"heap-bytes/key": 573}}}
	for prefix, want := range map[string]string{
		"hot verify ≥ 0.8×":            "PASS",
		"hot verify ≥ 5×":              "FAIL", // 4.25×
		"hot p99":                      "PASS",
		"issuance ≥ 0.8× plugin floor": "FAIL", // the floor (0.375× KV write) is the bar: 1100 < 1200
		"issuance ≥ 1,000":             "PASS",
		"cold verify":                  "FAIL",
		"revocation":                   "FAIL", // p99 30 ms
		"verifier memory":              "FAIL",
	} {
		if got := statusOf(t, r, prefix); !strings.HasPrefix(got, want) {
			t.Errorf("%s: got %s, want %s", prefix, got, want)
		}
	}
	// The cold row gives the ratio to the least-privilege read beside the anchor's.
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, "cold verify") && !strings.Contains(tg.measured, "0.90× (900 vs 1000 req/s); 1.12× the read with a least-privilege token") {
			t.Errorf("cold row: %s", tg.measured)
		}
	}
	// A cold load faster than the anchor passes, unless its best round ran out
	// of never-verified keys and answered some from the cache.
	r.loads[3].rps = 1200
	r.coldKeysTotal, r.coldKeysUsed = 3000, 2400
	if got := statusOf(t, r, "cold verify"); !strings.HasPrefix(got, "PASS") {
		t.Errorf("cold within its keys: got %s", got)
	}
	r.coldKeysUsed = 3001
	if got := statusOf(t, r, "cold verify"); !strings.HasPrefix(got, "FAIL") {
		t.Errorf("cold past its keys: got %s", got)
	}
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, "cold verify") && !strings.Contains(tg.measured, "overstated") {
			t.Errorf("cold row past its keys does not say so: %s", tg.measured)
		}
	}
	r.loads[3].rps = 900
	// A floor at or above half a KV write: issuance is held to 0.5× KV write.
	r.loads[7].rps = 3000
	if got := statusOf(t, r, "issuance ≥ 0.5× KV v2 write"); !strings.HasPrefix(got, "FAIL") {
		t.Errorf("got %s", got)
	}
	// What a request cost Vault is given beside the cold and issuance targets
	// once both loads of a pair were metered, and the usage report's cost
	// beside the cold one once it was measured.
	byName := func(name string) *load {
		for i := range r.loads {
			if r.loads[i].name == name {
				return &r.loads[i]
			}
		}
		t.Fatalf("no load %s", name)
		return nil
	}
	byName(loadCold).vaultCPU, byName(loadCold).requests = time.Second, 5000
	byName(loadIssue).vaultCPU, byName(loadIssue).requests = 2*time.Second, 1000
	r.usage = usageCost{keys: 3000, vaultCPU: 900 * time.Millisecond, elapsed: time.Second}
	assert.NotContains(t, targetNamed(t, r, "cold verify").measured, "processor time", "the KV read was not metered")
	assert.NotContains(t, targetNamed(t, r, "issuance ≥ 0.5× KV v2 write").measured, "processor time", "the KV write was not metered")
	byName(loadKVRead).vaultCPU, byName(loadKVRead).requests = 2*time.Second, 8000
	byName(loadKVWrite).vaultCPU, byName(loadKVWrite).requests = time.Second, 2000
	assert.True(t, strings.HasSuffix(targetNamed(t, r, "cold verify").measured,
		"; Vault's processor time per request, plugins included: 200 µs cold, 250 µs KV v2 read, and each new key's usage report 300 µs more (measured on its own, below)"),
		targetNamed(t, r, "cold verify").measured)
	assert.True(t, strings.HasSuffix(targetNamed(t, r, "issuance ≥ 0.5× KV v2 write").measured,
		"; Vault's processor time per request, plugins included: 2000 µs a create, 500 µs a KV v2 write"),
		targetNamed(t, r, "issuance ≥ 0.5× KV v2 write").measured)
	assert.Contains(t, r.markdown(options{}), "3000 keys' uses took 300 µs of Vault's processor time a key, 1s in all")
	// The verifier's own processor time is given beside the hot and cold
	// targets once its loads (and the bare handler) were metered.
	assert.NotContains(t, targetNamed(t, r, "hot verify ≥ 0.8×").measured, "processor time")
	byName(loadCold).serverCPU = 500 * time.Millisecond
	assert.True(t, strings.HasSuffix(targetNamed(t, r, "cold verify").measured, "; the verifier's own, on top: 100 µs a cold verify"),
		targetNamed(t, r, "cold verify").measured)
	// The cold row gives the verifier's keys per lookup once they were counted.
	byName(loadCold).lookups, byName(loadCold).lookupKeys = 250, 4000
	assert.True(t, strings.HasSuffix(targetNamed(t, r, "cold verify").measured,
		"; the verifier's lookups asked Vault for 16.0 keys each on average (250 lookups)"),
		targetNamed(t, r, "cold verify").measured)
	byName(loadHot).serverCPU, byName(loadHot).requests = 3*time.Second, 100000
	assert.NotContains(t, targetNamed(t, r, "hot verify ≥ 0.8×").measured, "processor time", "the bare handler was not metered")
	byName(loadBare).serverCPU, byName(loadBare).requests = 2*time.Second, 100000
	assert.True(t, strings.HasSuffix(targetNamed(t, r, "hot verify ≥ 0.8×").measured,
		"; processor time per request: 30 µs the verifier, 20 µs the bare handler, so by processor time hot verify is 0.67× the bare handler"),
		targetNamed(t, r, "hot verify ≥ 0.8×").measured)
	assert.Contains(t, r.markdown(options{}), "| 30 µs |", "the server CPU column")
	// The contract minimum, when measured, is given beside the issuance target
	// as a bound; it does not change the target's status either way.
	r.loads = append(r.loads, load{name: loadContract, rps: 1600})
	for _, issRPS := range []float64{1100, 2100} { // below and above the target
		byName(loadIssue).rps = issRPS
		tg := targetNamed(t, r, "issuance ≥ 0.5× KV v2 write")
		assert.Contains(t, tg.measured, fmt.Sprintf("; contract minimum 0.40× KV v2 write, issuance %.2f× it", issRPS/1600))
		assert.Equal(t, issRPS >= 0.5*4000, tg.ok, tg.measured)
	}
	byName(loadIssue).rps = 1100
	// Fast propagation under a load that fell short of half the hot maximum does not pass.
	r.propagation.applied = []time.Duration{time.Millisecond}
	r.propagation.latencies = []time.Duration{40 * time.Millisecond} // the prober's view is reported, not judged
	r.propagation.background.rps = 3000
	if got := statusOf(t, r, "revocation"); !strings.HasPrefix(got, "FAIL") {
		t.Errorf("load short of the target: got %s", got)
	}
	r.propagation.background.rps = 4300
	if got := statusOf(t, r, "revocation"); !strings.HasPrefix(got, "PASS") {
		t.Errorf("got %s", got)
	}
	assert.Contains(t, targetNamed(t, r, "revocation propagation").measured, "the prober's first REVOKED decision: 40.00 ms")
	// A revocation no decision was made at or past is not seen: it fails.
	r.propagation.unapplied = 1
	if got := statusOf(t, r, "revocation"); !strings.HasPrefix(got, "FAIL") {
		t.Errorf("a revocation never applied: got %s", got)
	}
	r.propagation.unapplied = 0
	if md := r.markdown(options{}); !strings.Contains(md, "| target | this run | status |") {
		t.Errorf("report has no targets table:\n%s", md)
	}
	// The feed's own part is reported when the verifier's histogram moved.
	r.propagation.feedLag = lagCounts{total: 600, within: map[string]float64{"0.01": 540, "0.025": 594, "0.05": 600}}
	if md := r.markdown(options{}); !strings.Contains(md, "600 changes applied, 540 (90.0%) within 10 ms, 594 (99.0%) within 25 ms, 600 (100.0%) within 50 ms") {
		t.Errorf("no feed lag line:\n%s", md)
	}
}

func TestWrkDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{time.Hour: "3600s", 8 * time.Second: "8s", 90 * time.Second: "90s", 200 * time.Millisecond: "1s"} {
		if got := wrkDuration(d); got != want {
			t.Errorf("wrkDuration(%s) = %s, want %s", d, got, want)
		}
	}
}
