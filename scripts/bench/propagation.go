package main

import (
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// The bench-only build of the plugin (backend/path_benchfloor.go) and where it
// is mounted: its bench/floor write is Vault's own cost per plugin write.
const (
	floorPlugin = "vault-plugin-secrets-apikeys-benchfloor"
	floorMount  = "benchfloor"
)

// buildFloorPlugin puts the benchfloor build into the session's plugin
// directory before Vault starts, so the dev server registers it too.
func buildFloorPlugin(s *vaulttest.Session) error {
	bin := filepath.Join(vaulttest.PluginDir(s), floorPlugin)
	cmd := exec.Command("go", "build", "-tags", "benchfloor", "-o", bin, "./scripts/bench/floorplugin")
	cmd.Dir = vaulttest.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the benchfloor plugin: %v\n%s", err, out)
	}
	return nil
}

type propagationResult struct {
	latencies  []time.Duration // sorted
	failures   int
	targetRate float64
	background load // the paced load as wrk measured it
	delayMs    int
}

// Pacing: every connection waits pacedDelayMs after each answer, so n
// connections make about n·1000/(pacedDelayMs+pacedOverheadMs) requests a
// second. A long pause keeps the rate insensitive to the service time; the
// overhead (wrk's millisecond timer plus the answer, 21.3 ms a cycle measured
// on loopback) errs towards a little more load than the target, not less.
const (
	pacedDelayMs      = 20
	pacedOverheadMs   = 1.0
	calibrationRuns   = 3
	calibrationMargin = 1.1
)

// propagation revokes each victim (cached by the verifier) while wrk sends a
// paced load of other keys at rate, and measures from the delete returning to
// the verifier's first REVOKED answer. The load wrk actually achieved is
// reported beside the target.
func propagation(w *wrkRunner, addr, token, verifierURL string, victims []issued, backgroundKeys string, rate float64) (propagationResult, error) {
	res := propagationResult{targetRate: rate, delayMs: pacedDelayMs}
	script := w.paced(w.postKeys(backgroundKeys, false), pacedDelayMs)
	url := verifierURL + "/v1/verify"
	conns := max(1, int(math.Ceil(rate*(pacedDelayMs+pacedOverheadMs)/1000)))
	// Calibrate: a loaded server answers slower than the estimate assumes, and
	// the revocations and probes below take their share, so scale the
	// connections until a short paced run exceeds the rate by calibrationMargin
	// (each step at most 2×, at most calibrationRuns runs).
	for i := 0; i < calibrationRuns; i++ {
		probe, err := w.run("paced calibration", url, script, 2*time.Second, conns)
		if err != nil || probe.rps <= 0 || probe.rps >= calibrationMargin*rate {
			break
		}
		conns = int(math.Ceil(float64(conns) * min(2, calibrationMargin*rate/probe.rps)))
	}
	stop, err := w.start("paced background", url, script, conns)
	if err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond) // let every connection open and settle into its pace
	h := http.Header{"X-Vault-Token": {token}}
	for _, k := range victims {
		if code, _ := verifyCode(verifierURL, k.key); code != "VALID" {
			res.failures++
			continue
		}
		if _, err := vaultDo(addr, "DELETE", "apikeys/tenants/acme/keys/"+k.name, h, nil); err != nil {
			res.failures++
			continue
		}
		t0 := time.Now()
		seen := false
		for time.Since(t0) < 2*time.Second {
			if code, _ := verifyCode(verifierURL, k.key); code == "REVOKED" {
				res.latencies = append(res.latencies, time.Since(t0))
				seen = true
				break
			}
		}
		if !seen {
			res.failures++
		}
	}
	if res.background, err = stop(); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "bench:   paced load: %d connections, %.0f of %.0f req/s\n", conns, res.background.rps, rate)
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res, nil
}
