package main

import (
	"strings"
	"testing"
	"time"
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
	r.propagation = propagationResult{latencies: []time.Duration{time.Millisecond, 30 * time.Millisecond}, targetRate: 4250, background: load{rps: 4300}}
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
	// once both loads of a pair were metered.
	byName := func(name string) *load {
		for i := range r.loads {
			if r.loads[i].name == name {
				return &r.loads[i]
			}
		}
		t.Fatalf("no load %s", name)
		return nil
	}
	byName(loadCold).vaultCPU, byName(loadCold).vaultCPURun, byName(loadCold).requests = time.Second, 600*time.Millisecond, 5000
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, "cold verify") && strings.Contains(tg.measured, "processor time") {
			t.Errorf("cold row with the KV read not metered: %s", tg.measured)
		}
	}
	byName(loadKVRead).vaultCPU, byName(loadKVRead).requests = 2*time.Second, 8000
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, "cold verify") && !strings.HasSuffix(tg.measured, "; Vault's processor time per request, plugins included: 200 µs cold (120 µs while wrk ran, the rest the verifier's usage report of its keys), 250 µs KV v2 read") {
			t.Errorf("cold row: %s", tg.measured)
		}
	}
	// The contract minimum, when measured, is given beside the issuance target
	// as a bound; it does not change the target's status.
	r.loads = append(r.loads, load{name: loadContract, rps: 1600})
	for _, tg := range r.targets() {
		if strings.HasPrefix(tg.goal, "issuance ≥ 0.5× KV v2 write") &&
			(!strings.HasSuffix(tg.measured, "; contract minimum 0.40× KV v2 write, issuance 0.69× it") || tg.ok) {
			t.Errorf("issuance row with the contract minimum: %s (ok %v)", tg.measured, tg.ok)
		}
	}
	// Fast propagation under a load that fell short of half the hot maximum does not pass.
	r.propagation.latencies = []time.Duration{time.Millisecond}
	r.propagation.background.rps = 3000
	if got := statusOf(t, r, "revocation"); !strings.HasPrefix(got, "FAIL") {
		t.Errorf("load short of the target: got %s", got)
	}
	r.propagation.background.rps = 4300
	if got := statusOf(t, r, "revocation"); !strings.HasPrefix(got, "PASS") {
		t.Errorf("got %s", got)
	}
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
