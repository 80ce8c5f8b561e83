package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// load is one wrk run's outcome.
type load struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	requests int64
	errors   int64
}

type wrkRunner struct {
	dir string
	o   options
	n   int
}

func (w *wrkRunner) script(body string) string {
	w.n++
	path := filepath.Join(w.dir, fmt.Sprintf("load%d.lua", w.n))
	_ = os.WriteFile(path, []byte(body), 0o600)
	return path
}

// postKeys posts {"key": …} from a file. sequential=true gives each thread its
// own slice of keys, each used once (the cold load); otherwise keys cycle.
func (w *wrkRunner) postKeys(keysFile string, sequential bool) string {
	return w.script(fmt.Sprintf(`
local keys = {}
for line in io.lines(%q) do keys[#keys + 1] = line end
local threads, sequential = %d, %t
local counter = 0
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local i, first, span
function init(args)
  span = math.floor(#keys / threads)
  first = tid * span
  i = 0
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local k
  if sequential then
    k = keys[first + (i %% span) + 1]
  else
    k = keys[((first + i * 7) %% #keys) + 1]
  end
  i = i + 1
  return wrk.format(nil, nil, nil, '{"key":"' .. k .. '"}')
end
`, keysFile, w.o.threads, sequential))
}

func (w *wrkRunner) get(token string) string {
	return w.script(fmt.Sprintf("wrk.method = \"GET\"\nwrk.headers[\"X-Vault-Token\"] = %q\n", token))
}

func (w *wrkRunner) postBody(token, body string) string {
	return w.script(fmt.Sprintf("wrk.method = \"POST\"\nwrk.headers[\"X-Vault-Token\"] = %q\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = %q\n", token, body))
}

var (
	reqsPerSec = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	percentile = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	totalReqs  = regexp.MustCompile(`(\d+) requests in`)
	non2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	sockErrs   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func (w *wrkRunner) run(name, url, script string, d time.Duration) (load, error) {
	args := []string{"-t", strconv.Itoa(w.o.threads), "-c", strconv.Itoa(w.o.connections),
		"-d", d.String(), "--timeout", "5s", "--latency", "-s", script, url}
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		return load{}, fmt.Errorf("wrk %s: %v\n%s", name, err, out)
	}
	text := string(out)
	l := load{name: name}
	m := reqsPerSec.FindStringSubmatch(text)
	if m == nil {
		return l, fmt.Errorf("wrk %s: no Requests/sec in output:\n%s", name, text)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, pm := range percentile.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(pm[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[pm[3]]
		d := time.Duration(v * float64(unit))
		if pm[1] == "50" {
			l.p50 = d
		} else {
			l.p99 = d
		}
	}
	if m := totalReqs.FindStringSubmatch(text); m != nil {
		l.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := non2xx.FindStringSubmatch(text); m != nil {
		l.errors, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := sockErrs.FindStringSubmatch(text); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			l.errors += n
		}
	}
	fmt.Fprintf(os.Stderr, "bench:   %.0f req/s, p50 %s, p99 %s, %d errors\n", l.rps, l.p50, l.p99, l.errors)
	return l, nil
}

func (r *results) markdown(o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nMeasured by `make bench` on %s, %s.\n", r.machine, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Every figure comes from this one run on this machine; compare only within it.\n")
	fmt.Fprintf(&b, "wrk: %d threads, %d connections, %s per load, load generator on the same machine, loopback only.\n\n", o.threads, o.connections, o.duration)
	bare, token := r.loads[0], r.loads[3]
	fmt.Fprintf(&b, "| load | req/s | p50 | p99 | × bare handler | × Vault token lookup | errors |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range r.loads {
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %.2f | %.2f | %d |\n", l.name, l.rps, ms(l.p50), ms(l.p99), l.rps/bare.rps, l.rps/token.rps, l.errors)
	}
	hot, cold, kv := r.loads[1], r.loads[2], r.loads[5]
	fmt.Fprintf(&b, "\nHot p99 / bare p99: %.2f. Cold req/s / KV v2 read req/s: %.2f.\n", float64(hot.p99)/float64(max(bare.p99, 1)), cold.rps/kv.rps)
	fmt.Fprintf(&b, "The cold load (%s) sent %d requests over %d never-verified keys, each thread walking its own share once", o.coldDuration, r.coldKeysUsed, r.coldKeysTotal)
	if r.coldKeysUsed > int64(r.coldKeysTotal) {
		fmt.Fprintf(&b, " — more requests than keys, so some were repeats and hit the cache: this run overstates the cold rate")
	}
	fmt.Fprintf(&b, ".\n")
	fmt.Fprintf(&b, "\n## Issuance (Vault HTTP API, concurrency 16)\n\n| phase | keys/s |\n|---|---:|\n")
	fmt.Fprintf(&b, "| first %d keys (store empty → %d) | %.0f |\n| %d more with %d stored | %.0f |\n", o.fill, o.fill, r.fillRate, o.measured, o.fill, r.measuredRate)
	fmt.Fprintf(&b, "\nFirst page of `LIST apikeys/keys` (limit 100) with %d keys stored: %s.\n", o.fill+o.measured, ms(r.listFirstPage))
	fmt.Fprintf(&b, "\n## Revocation propagation under load\n\n")
	fmt.Fprintf(&b, "%d cached keys revoked one by one with `DELETE apikeys/keys/<name>` while a paced load of other keys ran (target %.0f req/s = half the hot maximum, achieved %.0f req/s). Latency from the delete returning to the verifier's first REVOKED answer:\n\n", len(r.propagation)+r.propagationFailures, r.propagationLoadRate, r.propagationLoadAchieved)
	fmt.Fprintf(&b, "| p50 | p99 | max | not seen within 2 s |\n|---:|---:|---:|---:|\n| %s | %s | %s | %d |\n", ms(pct(r.propagation, 0.50)), ms(pct(r.propagation, 0.99)), ms(pct(r.propagation, 1)), r.propagationFailures)
	return b.String()
}
