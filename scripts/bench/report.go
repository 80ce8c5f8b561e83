package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// target is one of issue 15's goals, checked against this run's figures.
type target struct {
	goal, measured string
	ok             bool
}

func status(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// ratio is a/b, or 0 when b did not run.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Propagation target (DESIGN §7) and how close the paced load must come to
// its rate to count as having reached it.
const (
	propagationP99 = 25 * time.Millisecond
	loadReached    = 0.95
)

func (r *results) targets() []target {
	bare, hot, cold, tok := r.load(loadBare), r.load(loadHot), r.load(loadCold), r.load(loadToken)
	kvRead, kvWrite, floor, iss := r.load(loadKVRead), r.load(loadKVWrite), r.load(loadFloor), r.load(loadIssue)
	kvPol, contract := r.load(loadKVPol), r.load(loadContract)
	t := []target{
		{"hot verify ≥ 0.8× bare handler", fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", ratio(hot.rps, bare.rps), hot.rps, bare.rps) + serverCPUNote(hot, bare), ratio(hot.rps, bare.rps) >= 0.8},
		{"hot verify ≥ 5× Vault token lookup", fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", ratio(hot.rps, tok.rps), hot.rps, tok.rps), ratio(hot.rps, tok.rps) >= 5},
		{"hot p99 ≤ 2× bare p99", fmt.Sprintf("%.2f× (%s vs %s)", ratio(float64(hot.p99), float64(bare.p99)), ms(hot.p99), ms(bare.p99)), hot.p99 > 0 && hot.p99 <= 2*bare.p99},
	}
	// Vault's own per-write cost for an external plugin may be the floor: where
	// the floor is below half a KV write, issuance is held to 0.8× the floor.
	issuance := target{"issuance ≥ 0.5× KV v2 write",
		fmt.Sprintf("%.2f× (%.0f vs %.0f req/s); floor %.2f× KV v2 write", ratio(iss.rps, kvWrite.rps), iss.rps, kvWrite.rps, ratio(floor.rps, kvWrite.rps)), iss.rps >= 0.5*kvWrite.rps && kvWrite.rps > 0}
	if floor.rps < 0.5*kvWrite.rps {
		issuance = target{"issuance ≥ 0.8× plugin floor (the floor is below 0.5× KV v2 write)",
			fmt.Sprintf("%.2f× floor (%.0f vs %.0f req/s); %.2f× KV v2 write", ratio(iss.rps, floor.rps), iss.rps, floor.rps, ratio(iss.rps, kvWrite.rps)), iss.rps >= 0.8*floor.rps && floor.rps > 0}
	}
	// The contract minimum is a bound beside the target, never the target.
	if contract.rps > 0 && iss.rps > 0 && kvWrite.rps > 0 {
		issuance.measured += fmt.Sprintf("; contract minimum %.2f× KV v2 write, issuance %.2f× it", ratio(contract.rps, kvWrite.rps), ratio(iss.rps, contract.rps))
	}
	issuance.measured += vaultCPUNote("a create", iss, "a KV v2 write", kvWrite)
	t = append(t, issuance,
		target{"issuance ≥ 1,000 keys/s", fmt.Sprintf("%.0f keys/s", iss.rps), iss.rps >= 1000},
		// The anchor reads with the root token, as the other Vault loads but the
		// token lookup do; the verifier holds a policy token, so the same read with
		// one is shown too.
		coldTarget(cold, kvRead, kvPol, r.coldRanOut(), r.usage),
	)
	p := r.propagation
	reached := p.background.rps >= loadReached*p.targetRate
	t = append(t, target{fmt.Sprintf("revocation propagation p99 ≤ %s (delete returned → the verifier applying it: its first decision at the revocation's feed position), under a load reaching half the hot maximum", ms(propagationP99)),
		fmt.Sprintf("p99 %s (the prober's first REVOKED decision: %s, its answer received: %s), %d not applied, %d not seen by the prober; load %.0f of %.0f req/s (%.0f%%)", ms(pct(p.applied, 0.99)), ms(pct(p.latencies, 0.99)), ms(pct(p.answered, 0.99)), p.unapplied, p.failures, p.background.rps, p.targetRate, 100*ratio(p.background.rps, p.targetRate)),
		len(p.applied) > 0 && p.failures == 0 && p.unapplied == 0 && pct(p.applied, 0.99) <= propagationP99 && reached})
	if m := r.memoryShape(""); m != nil {
		b := m.metrics["heap-bytes/key"]
		t = append(t, target{"verifier memory ≤ 300 bytes per cached key (bench shape, heap)", fmt.Sprintf("%.0f bytes/key", b), b > 0 && b <= 300})
	} else {
		t = append(t, target{"verifier memory ≤ 300 bytes per cached key (bench shape, heap)", "not measured", false})
	}
	return t
}

// memoryShape returns the bench-shape memory result ("" picks the first).
func (r *results) memoryShape(shape string) *memoryResult {
	for i := range r.memory {
		if shape == "" || r.memory[i].shape == shape {
			return &r.memory[i]
		}
	}
	return nil
}

func (r *results) markdown(o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured by `make bench` on %s, %s.\n", r.machine, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Every figure comes from this one run on this machine; compare only within it.\n")
	fmt.Fprintf(&b, "wrk: %d threads, %s per load, load generator on the same machine, loopback only; reads at %d connections, writes at %d.\n\n",
		o.threads, o.duration, o.connections, o.writeConns)

	fmt.Fprintf(&b, "## Targets (issue 15)\n\n| target | this run | status |\n|---|---|---|\n")
	for _, t := range r.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.goal, t.measured, status(t.ok))
	}

	bare, tok, kvWrite := r.load(loadBare), r.load(loadToken), r.load(loadKVWrite)
	fmt.Fprintf(&b, "\n## Loads\n\nEvery load ran in %d interleaved rounds (each round runs every load once, in this order); the row is its best round, and the last column lists every round's req/s.\n\n", o.rounds)
	fmt.Fprintf(&b, "| load | conns | req/s | p50 | p99 | × bare handler | × Vault token lookup | × KV v2 write | Vault CPU per request | server CPU per request | storage writes per request | errors | rounds (req/s) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, l := range r.loads {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s | %.2f | %.2f | %.2f | %s | %s | %s | %d | %s |\n", l.name, l.conns, l.rps, ms(l.p50), ms(l.p99),
			ratio(l.rps, bare.rps), ratio(l.rps, tok.rps), ratio(l.rps, kvWrite.rps), perRequest(l.vaultCPU, l.requests), perRequest(l.serverCPU, l.requests),
			perRequestCount(l.storageWrites, l.requests), l.errors, roundsOf(l.runs))
	}
	fmt.Fprintf(&b, "\nThe bare handler reads the body, takes the key out of the JSON with a byte scan, hashes it once and looks it up in a `sync.Map`, and writes a constant answer (scripts/bench/bare).\n")
	fmt.Fprintf(&b, "The plugin floor is a bench-only build of the plugin (`-tags benchfloor`, backend/path_benchfloor.go) whose write does one storage put: Vault's own cost per write to an external plugin.\n")
	fmt.Fprintf(&b, "The contract minimum is a path of the same build that does only the storage traffic no create can avoid while a change reaches the feed only after its record is written (docs/revocation.md): a record and a name entry of a bench key's sizes written side by side, then a feed entry (only after the record), then the event — no key, no seal, no checks, no publish mark. It bounds what issuance can reach on this Vault; it is not a target.\n")
	fmt.Fprintf(&b, "Vault CPU per request is the processor time (user and system, from /proc) that the Vault server and its plugin processes spent during the best round, over its requests: what a request costs Vault itself, apart from the verifier and wrk on the same cores. After the cold load the bench waits for the verifier's usage report of its keys to end (the report costs Vault more than the lookups; see below), so the next load does not carry it; the verifier's feed polls and its other usage reports (every 10 s) fall in whichever window they happen in.\n")
	fmt.Fprintf(&b, "Storage writes per request are the puts and deletes Vault's storage barrier took during the best round (Vault's own `vault.barrier.put` and `vault.barrier.delete`, from sys/metrics), over its requests: every entry Vault or a plugin stores or deletes passes through the barrier. A create writes the key's record, its name entry and its feed entry, and its publish mark (a put before, a delete after) unless it shares the mark with creates in flight beside it (docs/revocation.md).\n")
	fmt.Fprintf(&b, "Server CPU per request is the same for the process that served a load when it is not Vault: the bare handler, or the verifier (whose cold requests also cost Vault the column before). Where every process shares two cores, it says what a request costs its server more steadily than req/s does.\n")
	if u := r.usage; u.keys > 0 {
		fmt.Fprintf(&b, "A usage report costs Vault apart from the lookups: reported as the verifier reports them (writes of up to %d keys, one after another, with the verifier's token), %d keys' uses took %s of Vault's processor time a key, %s in all. The plugin writes one storage entry per key in a report, so cold traffic, where every key is new, pays this once a key.\n",
			wire.MaxUsageBatch, u.keys, perRequest(u.vaultCPU, int64(u.keys)), u.elapsed.Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "Vault's loads use the root token, except the token lookup (the verifier's token) and the least-privilege KV read (a token whose one policy grants that read, as the verifier's grants its paths): Vault checks a policy token's ACL on every request, which root skips.\n")
	fmt.Fprintf(&b, "The cold load (%s) of its best round sent %d requests over that round's %d never-verified keys, each thread walking its own share once", o.coldDuration, r.coldKeysUsed, r.coldKeysTotal)
	if r.coldRanOut() {
		fmt.Fprintf(&b, " — more requests than keys, so some were repeats and hit the cache: this run overstates the cold rate")
	}
	fmt.Fprintf(&b, ".\n")

	fmt.Fprintf(&b, "\n## Issuance with the Go client (concurrency 16; these keys feed the verify loads)\n\n| phase | keys/s |\n|---|---:|\n")
	fmt.Fprintf(&b, "| first %d keys (store empty → %d) | %.0f |\n| %d more with %d stored | %.0f |\n", o.fill, o.fill, r.fillRate, o.measured, o.fill, r.measuredRate)
	fmt.Fprintf(&b, "\nFirst page of `LIST apikeys/tenants/acme/keys` (limit 100) with %d keys stored: %s.\n", o.fill+o.measured, ms(r.listFirstPage))

	p := r.propagation
	fmt.Fprintf(&b, "\n## Revocation propagation under load\n\n")
	fmt.Fprintf(&b, "%d cached keys revoked one by one with `DELETE apikeys/tenants/acme/keys/<name>` while wrk sent a paced load of other keys (%d connections, a random pause of %d ms on average after each answer): target %.0f req/s = half the hot maximum, achieved %.0f req/s (p99 %s). After each delete returned, a prober asked the verifier about the key every %s until it answered REVOKED. Latency from the delete returning to: the verifier applying the revocation (the end of its first decision, on any key, made at the revocation's feed position or past it, from the audit lines' `feed_seq`: every check of the key that begins after it is refused; since 2026-11-27 the target is judged on this row, before on the next one); the verifier's first REVOKED decision for the prober (its audit line's time: when it began handling the first probe it refused; the prober sends a probe only after the answer to the last one and a pause, so this adds up to one probe's round trip through the loaded verifier and the pause); and the prober receiving that answer (which adds the answer's own way back). Not seen: for the first row, revocations no decision was made at or past; for the prober's rows, no REVOKED answer within 2 s:\n\n",
		len(p.answered)+p.failures, p.background.conns, p.delayMs, p.targetRate, p.background.rps, ms(p.background.p99), probeEvery)
	fmt.Fprintf(&b, "| measured to | p50 | p99 | max | not seen |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| the verifier applying it | %s | %s | %s | %d |\n", ms(pct(p.applied, 0.50)), ms(pct(p.applied, 0.99)), ms(pct(p.applied, 1)), p.unapplied)
	fmt.Fprintf(&b, "| the verifier's first REVOKED decision | %s | %s | %s | %d |\n", ms(pct(p.latencies, 0.50)), ms(pct(p.latencies, 0.99)), ms(pct(p.latencies, 1)), p.failures)
	fmt.Fprintf(&b, "| the prober receiving it | %s | %s | %s | %d |\n", ms(pct(p.answered, 0.50)), ms(pct(p.answered, 0.99)), ms(pct(p.answered, 1)), p.failures)
	if l := p.feedLag; l.total > 0 {
		fmt.Fprintf(&b, "\nThe feed's own part, from the verifier's `%s` over the same time (each change from its append in the plugin, before the delete returns, to its application in the verifier): %.0f changes applied, %s within 10 ms, %s within 25 ms, %s within 50 ms.\n",
			feedLagMetric, l.total, share(l.within["0.01"], l.total), share(l.within["0.025"], l.total), share(l.within["0.05"], l.total))
	}

	fmt.Fprintf(&b, "\n## Verifier memory per cached key\n\n")
	switch {
	case r.memoryErr != nil:
		fmt.Fprintf(&b, "The memory benchmark failed: %v\n", r.memoryErr)
	case len(r.memory) == 0:
		fmt.Fprintf(&b, "Not measured in this run (-memory-keys 0).\n")
	default:
		fmt.Fprintf(&b, "`go test -run '^$' -bench '^BenchmarkCacheMillionKeys$' -benchtime 1x ./verifier/ -args -memory-keys %d`: each key goes through the real miss path (lookup answer decoded from JSON, sealed digest opened, record inserted).\n\n", o.memoryKeys)
		fmt.Fprintf(&b, "| key shape | keys | heap bytes/key | RSS bytes/key | process RSS |\n|---|---:|---:|---:|---:|\n")
		for _, m := range r.memory {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f MB |\n", memoryShapeName(m.shape), o.memoryKeys, m.metrics["heap-bytes/key"], m.metrics["rss-bytes/key"], m.metrics["MB-rss"])
		}
	}
	return b.String()
}

func memoryShapeName(shape string) string {
	switch shape {
	case "shape=bench":
		return "bench keys: 16-character names, no metadata, role values shared"
	case "shape=metadata-200B":
		return "the same with 200 bytes of metadata"
	}
	return shape
}

// roundsOf lists the req/s of every round of a load.
func roundsOf(runs []float64) string {
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = fmt.Sprintf("%.0f", r)
	}
	return strings.Join(out, ", ")
}

// coldRanOut reports whether the cold load's best round sent more requests
// than it had never-verified keys: it verified some twice, from the cache.
func (r *results) coldRanOut() bool { return r.coldKeysUsed > int64(r.coldKeysTotal) }

// coldTarget is the cold row. A best round that ran out of keys says so and
// cannot pass.
func coldTarget(cold, kvRead, kvPol load, repeated bool, usage usageCost) target {
	measured := fmt.Sprintf("%.2f× (%.0f vs %.0f req/s); %.2f× the read with a least-privilege token", ratio(cold.rps, kvRead.rps), cold.rps, kvRead.rps, ratio(cold.rps, kvPol.rps))
	if repeated {
		measured += "; overstated: the load ran out of never-verified keys (raise -fill)"
	}
	if note := vaultCPUNote("cold", cold, "KV v2 read", kvRead); note != "" {
		measured += note
		if per := perRequest(usage.vaultCPU, int64(usage.keys)); per != "" {
			measured += fmt.Sprintf(", and each new key's usage report %s more (measured on its own, below)", per)
		}
		if per := perRequest(cold.serverCPU, cold.requests); per != "" {
			measured += fmt.Sprintf("; the verifier's own, on top: %s a cold verify", per)
		}
	}
	if cold.lookups > 0 {
		measured += fmt.Sprintf("; the verifier's lookups asked Vault for %.1f keys each on average (%.0f lookups)", cold.lookupKeys/cold.lookups, cold.lookups)
	}
	return target{"cold verify ≥ 1.0× KV v2 read", measured, cold.rps >= kvRead.rps && kvRead.rps > 0 && !repeated}
}

// serverCPUNote compares the processor time per request of the verifier and
// the bare handler, each in its own process, or says nothing when either was
// not measured.
func serverCPUNote(hot, bare load) string {
	ph, pb := perRequest(hot.serverCPU, hot.requests), perRequest(bare.serverCPU, bare.requests)
	if ph == "" || pb == "" {
		return ""
	}
	return fmt.Sprintf("; processor time per request: %s the verifier, %s the bare handler, so by processor time hot verify is %.2f× the bare handler", ph, pb,
		ratio(float64(bare.serverCPU)/float64(bare.requests), float64(hot.serverCPU)/float64(hot.requests)))
}

// vaultCPUNote compares what a request of load a and of load b cost Vault
// (plugins included), or says nothing when either was not measured.
func vaultCPUNote(aName string, a load, bName string, b load) string {
	pa, pb := perRequest(a.vaultCPU, a.requests), perRequest(b.vaultCPU, b.requests)
	if pa == "" || pb == "" {
		return ""
	}
	return fmt.Sprintf("; Vault's processor time per request, plugins included: %s %s, %s %s", pa, aName, pb, bName)
}

// share writes n of total as a count and a percentage.
func share(n, total float64) string {
	return fmt.Sprintf("%.0f (%.1f%%)", n, 100*n/total)
}
