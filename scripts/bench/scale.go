package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// Scale (issue 10, item 8): one mount, first 10,000 keys in 10 tenants, then
// o.scale keys with 10 keys per tenant (1,000,000 keys = 100,000 tenants).
// At each point it measures issuance into existing tenants, the first page of
// one tenant's list, and the quota check (a create refused by a full tenant,
// which does everything a create does up to the quota and then stops).

const keysPerScaleTenant = 10

// At each point, scaleRounds rounds each issue scaleMeasured keys.
const scaleRounds, scaleMeasured = 2, 5000

// The first point: firstKeys keys in firstTenants tenants (s00…s09), plus
// the one full tenant the quota check uses.
const firstKeys, firstTenants = 10_000, 10

// scalePoint is what one measurement found.
type scalePoint struct {
	stored, tenants int
	rate            float64       // keys/s issuing 5,000 keys into existing tenants: the best round
	rounds          []float64     // every round's rate
	list            time.Duration // first page (limit 100) of one tenant's keys
	mountList       time.Duration // first page of the operator's mount-wide list, filtered to a tenant
	quota           time.Duration // mean latency of a create refused by the tenant quota
	// Vault's own endpoints on the same server at the same point: how much
	// Vault itself slowed down with everything it holds (the dev server keeps
	// all of it in its heap).
	kvRate float64       // KV v2 writes/s, new path each, same client and concurrency as issuance
	kvRead time.Duration // mean latency of a KV v2 read
}

func runScale(s *vaulttest.Session, o options) (string, error) {
	step := func(msg string) { fmt.Fprintf(os.Stderr, "bench-scale: %s\n", msg) }
	storage, ok := scaleStorages[o.scaleStorage]
	if !ok {
		return "", fmt.Errorf("-scale-storage must be raft, raft-ram or inmem, not %q", o.scaleStorage)
	}
	step("starting a Vault dev server with transit and the plugin; storage: " + storage.name)
	v := vaulttest.Start(s, storage.opts...)
	root := http.Header{"X-Vault-Token": {v.RootToken}}
	for _, w := range []struct {
		path string
		data map[string]interface{}
	}{
		{"apikeys/config", map[string]interface{}{"max_keys": 0, "max_keys_per_tenant": 0}},
		{"apikeys/roles/bench", map[string]interface{}{"permissions": "*"}},
		{"apikeys/tenants/full", map[string]interface{}{"max_keys": 1}},
		{"secret/data/scale-read", map[string]interface{}{"data": map[string]string{"k": "v"}}},
	} {
		if _, err := vaultDo(v.Addr, "POST", w.path, root, w.data); err != nil {
			return "", err
		}
	}
	if _, _, err := issue(v.Addr, v.RootToken, "only", 1, 1, func(int) string { return "full" }); err != nil {
		return "", err
	}
	small := func(i int) string { return fmt.Sprintf("s%02d", i%firstTenants) }
	wide := func(i int) string { return fmt.Sprintf("t%06d", i/keysPerScaleTenant) }

	measure := func(stored, tenants int, into func(int) string, listed string) (scalePoint, error) {
		p := scalePoint{stored: stored, tenants: tenants}
		// Issuance and Vault's own write alternate, each keeping its best
		// round: one slow stretch of the machine cannot decide the ratio.
		for r := 1; r <= scaleRounds; r++ {
			_, rate, err := issue(v.Addr, v.RootToken, fmt.Sprintf("m%d-%d", stored, r), scaleMeasured, 16, into)
			if err != nil {
				return p, err
			}
			p.rounds = append(p.rounds, rate)
			p.rate = max(p.rate, rate)
			kv, err := kvWrites(v.Addr, v.RootToken, fmt.Sprintf("kv%d-%d", stored, r), scaleMeasured, 16)
			if err != nil {
				return p, err
			}
			p.kvRate = max(p.kvRate, kv)
		}
		var err error
		timed := func(method, path string, want int) (time.Duration, error) {
			var body interface{}
			if method == "POST" {
				body = map[string]interface{}{"role": "bench"}
			}
			start := time.Now()
			_, err := vaultDoStatus(v.Addr, method, path, root, body, want)
			return time.Since(start), err
		}
		if p.list, err = timed("LIST", "apikeys/tenants/"+listed+"/keys?limit=100", http.StatusOK); err != nil {
			return p, err
		}
		if p.mountList, err = timed("LIST", "apikeys/keys?limit=100&tenant="+listed, http.StatusOK); err != nil {
			return p, err
		}
		const refused = 200
		var total time.Duration
		for i := 0; i < refused; i++ {
			d, err := timed("POST", fmt.Sprintf("apikeys/tenants/full/keys/over-%d-%d", stored, i), http.StatusBadRequest)
			if err != nil {
				return p, err
			}
			total += d
		}
		p.quota = total / refused
		total = 0
		for i := 0; i < refused; i++ {
			d, err := timedRead(v.Addr, "secret/data/scale-read", root)
			if err != nil {
				return p, err
			}
			total += d
		}
		p.kvRead = total / refused
		step(fmt.Sprintf("%d keys in %d tenants: %.0f keys/s, tenant page %s, quota check %s", stored, tenants, p.rate, p.list, p.quota))
		return p, nil
	}
	stored := 1
	fill := func(upTo int, tenant func(int) string) error {
		const chunk = 50000
		for stored < upTo {
			n := min(chunk, upTo-stored)
			start := time.Now()
			base := stored
			if _, _, err := issue(v.Addr, v.RootToken, fmt.Sprintf("f%07d", stored), n, 16, func(i int) string { return tenant(base + i) }); err != nil {
				return err
			}
			stored += n
			step(fmt.Sprintf("filled %d keys (%.0f keys/s for the last %d)", stored, float64(n)/time.Since(start).Seconds(), n))
		}
		return nil
	}
	var points []scalePoint
	if err := fill(firstKeys, small); err != nil {
		return "", err
	}
	p, err := measure(stored, firstTenants+1, small, "s03")
	if err != nil {
		return "", err
	}
	points = append(points, p)
	stored += scaleRounds * scaleMeasured
	// Key i of the fill goes to tenant wide(fillBase+i): the measurement below
	// issues into tenants the fill created, one key each (in turn, when a small
	// -scale made fewer tenants than it issues keys).
	fillBase := stored
	if err := fill(o.scale, wide); err != nil {
		return "", err
	}
	tenants := firstTenants + 1 + (o.scale-fillBase)/keysPerScaleTenant
	filled := max(1, o.scale-fillBase)
	p, err = measure(stored, tenants, func(i int) string { return wide(fillBase + i*keysPerScaleTenant%filled) }, "s03")
	if err != nil {
		return "", err
	}
	points = append(points, p)

	var b strings.Builder
	fmt.Fprintf(&b, "## Tenants, issuance and listing at scale (`make bench-scale`)\n\nMeasured on %s, %s. Vault's storage: %s. One mount. First 10,000 keys in 10 tenants; then keys %d to each new tenant up to %d keys. Each row issues keys into existing tenants at concurrency 16 through Vault's HTTP API in %d rounds of 5,000, each followed by 5,000 KV v2 writes with the same client (each column keeps its best round), lists the first page (limit 100) of tenant `s03` (about %d keys) as its admin and as an operator (`keys?tenant=s03`), and times %d creates refused by a full tenant's quota (a create's work up to the quota check).\n\n", machineInfo(), time.Now().UTC().Format("2006-01-02 15:04 MST"), storage.name, keysPerScaleTenant, o.scale, scaleRounds, (firstKeys+scaleRounds*scaleMeasured)/firstTenants, 200)
	fmt.Fprintf(&b, "| keys stored | tenants | issuance keys/s | issuance rounds | tenant page | operator page (tenant filter) | quota check (mean) | Vault KV v2 write/s | Vault KV v2 read (mean) |\n|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, p := range points {
		fmt.Fprintf(&b, "| %d | %d | %.0f | %s | %s | %s | %s | %.0f | %s |\n", p.stored, p.tenants, p.rate, roundsOf(p.rounds), ms(p.list), ms(p.mountList), ms(p.quota), p.kvRate, ms(p.kvRead))
	}
	a, z := points[0], points[1]
	kvW, kvR := z.kvRate/a.kvRate, float64(z.kvRead)/float64(a.kvRead)
	fmt.Fprintf(&b, "\nWith %d keys in %d tenants, against %d keys in %d tenants:\n\n", z.stored, z.tenants, a.stored, firstTenants)
	fmt.Fprintf(&b, "* issuance: %.2f× its rate (target ≥ 0.8×); Vault's own KV v2 write on the same server: %.2f×, so issuance kept %.2f of Vault's own pace\n", z.rate/a.rate, kvW, z.rate/a.rate/kvW)
	fmt.Fprintf(&b, "* tenant page: %.2f× as long; quota check: %.2f× as long; Vault's own KV v2 read: %.2f× as long (per Vault read: tenant page %.2f×, quota check %.2f×)\n",
		float64(z.list)/float64(a.list), float64(z.quota)/float64(a.quota), kvR, float64(z.list)/float64(a.list)/kvR, float64(z.quota)/float64(a.quota)/kvR)
	return b.String(), nil
}

// scaleStorages are the choices of -scale-storage: the server's options and
// what the report says of them.
var scaleStorages = map[string]struct {
	opts []vaulttest.Option
	name string
}{
	"raft":     {[]vaulttest.Option{vaulttest.WithRaft("")}, "integrated storage (one Raft node, on disk), as in production"},
	"raft-ram": {[]vaulttest.Option{vaulttest.WithRaft("/dev/shm")}, "integrated storage (one Raft node) on a RAM disk (/dev/shm): production's storage code, without the disk's fsync time, which does not grow with the keys stored"},
	"inmem":    {nil, "the dev server's in-memory storage, which keeps every entry in Vault's heap"},
}

// kvWrites writes n new KV v2 secrets at the given concurrency and returns the
// rate: Vault's own write, with the client and concurrency issuance uses.
func kvWrites(addr, token, prefix string, n, workers int) (float64, error) {
	h := http.Header{"X-Vault-Token": {token}, "Content-Type": {"application/json"}}
	return inParallel(n, workers, func(i int) error {
		_, err := vaultDo(addr, "POST", fmt.Sprintf("secret/data/%s-%07d", prefix, i), h, map[string]interface{}{"data": map[string]string{"k": "v"}})
		return err
	})
}

func timedRead(addr, path string, h http.Header) (time.Duration, error) {
	start := time.Now()
	_, err := vaultDo(addr, "GET", path, h, nil)
	return time.Since(start), err
}
