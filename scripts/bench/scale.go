package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// runScale measures issuance and the first list page with 10,000 keys stored
// and again with o.scale keys stored, in one run.
func runScale(s *vaulttest.Session, o options) (string, error) {
	step := func(msg string) { fmt.Fprintf(os.Stderr, "bench-scale: %s\n", msg) }
	step("starting a Vault dev server with transit and the plugin")
	v := vaulttest.Start(s)
	root := http.Header{"X-Vault-Token": {v.RootToken}}
	if _, err := vaultDo(v.Addr, "POST", "apikeys/config", root, map[string]interface{}{"max_keys": 0}); err != nil {
		return "", err
	}
	if _, err := vaultDo(v.Addr, "POST", "apikeys/roles/bench", root, map[string]interface{}{"permissions": "*"}); err != nil {
		return "", err
	}
	type point struct {
		stored   int
		rate     float64
		list     time.Duration
		filtered time.Duration
	}
	measure := func(stored int) (point, error) {
		_, rate, err := issue(v.Addr, v.RootToken, fmt.Sprintf("m%d", stored), 5000, 16)
		if err != nil {
			return point{}, err
		}
		p := point{stored: stored, rate: rate}
		start := time.Now()
		if _, err := vaultDo(v.Addr, "LIST", "apikeys/tenants/acme/keys?limit=100", root, nil); err != nil {
			return p, err
		}
		p.list = time.Since(start)
		start = time.Now()
		if _, err := vaultDo(v.Addr, "LIST", "apikeys/tenants/acme/keys?limit=100&status=active&after=m", root, nil); err != nil {
			return p, err
		}
		p.filtered = time.Since(start)
		step(fmt.Sprintf("%d stored: %.0f keys/s, first page %s", stored, rate, p.list))
		return p, nil
	}
	var points []point
	stored := 0
	fill := func(upTo int) error {
		const chunk = 50000
		for stored < upTo {
			n := min(chunk, upTo-stored)
			start := time.Now()
			if _, _, err := issue(v.Addr, v.RootToken, fmt.Sprintf("f%07d", stored), n, 16); err != nil {
				return err
			}
			stored += n
			step(fmt.Sprintf("filled %d keys (%.0f keys/s for the last %d)", stored, float64(n)/time.Since(start).Seconds(), n))
		}
		return nil
	}
	for _, target := range []int{10000, o.scale} {
		if err := fill(target); err != nil {
			return "", err
		}
		p, err := measure(stored)
		if err != nil {
			return "", err
		}
		stored += 5000
		points = append(points, p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Issuance and listing at scale (`make bench-scale`)\n\nMeasured on %s, %s. Each row issues 5,000 more keys at concurrency 16 through Vault's HTTP API, then lists the first page.\n\n", machineInfo(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "| keys stored | keys/s | first page (limit 100) | filtered page (status=active, after=) |\n|---:|---:|---:|---:|\n")
	for _, p := range points {
		fmt.Fprintf(&b, "| %d | %.0f | %s | %s |\n", p.stored, p.rate, ms(p.list), ms(p.filtered))
	}
	fmt.Fprintf(&b, "\nIssuance with %d stored is %.2f× the rate with %d stored.\n", points[1].stored, points[1].rate/points[0].rate, points[0].stored)
	return b.String(), nil
}
