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
	elapsed  time.Duration
	errors   int64
	conns    int
	runs     []float64 // req/s of every round, in order (the fields above are the best round's)
	// vaultCPU is the processor time Vault and its plugins spent during the run.
	vaultCPU time.Duration
	// serverCPU is that of the load's own server when it is not Vault: the
	// bare handler, or the verifier (0 for Vault's loads).
	serverCPU time.Duration
	// storageWrites counts the writes Vault's storage took during the run
	// (-1: not measured).
	storageWrites float64
	// lookups and lookupKeys count the verifier's lookup requests to Vault
	// during the run and the keys they asked for (cold load only; 0: not
	// measured).
	lookups, lookupKeys float64
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

// paced adds a pause after each response on every connection: wrk has no
// rate option, so the rate is set by the connection count (see propagation).
// The pause is drawn uniformly from [meanMs/2, 3·meanMs/2]: with one fixed
// pause, connections that start together keep sending together, in waves of
// every connection at once, and each wave queues behind itself in the server
// (the verifier's p99 doubled). Random pauses spread the same rate out, as
// independent clients do.
func (w *wrkRunner) paced(script string, meanMs int) string {
	raw, _ := os.ReadFile(script)
	return w.script(string(raw) + fmt.Sprintf("\nfunction delay() return math.random(%d, %d) end\n", meanMs/2, meanMs*3/2))
}

// postNew POSTs body to a new path on every request: pathPrefix, the thread
// number and a counter (writes that never overwrite, like issuance).
func (w *wrkRunner) postNew(token, pathPrefix, body string) string {
	return w.script(fmt.Sprintf(`
local counter = 0
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local i = 0
wrk.method = "POST"
wrk.headers["X-Vault-Token"] = %q
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  return wrk.format(nil, %q .. tid .. "-" .. i, nil, %q)
end
`, token, pathPrefix, body))
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
	totalReqs  = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m|h),`)
	non2xx     = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	sockErrs   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func (w *wrkRunner) run(name, url, script string, d time.Duration, conns int) (load, error) {
	out, err := exec.Command("wrk", w.args(url, script, d, conns)...).CombinedOutput()
	if err != nil {
		return load{}, fmt.Errorf("wrk %s: %v\n%s", name, err, out)
	}
	l, err := parseWrk(name, string(out))
	l.conns = conns
	return l, err
}

func (w *wrkRunner) args(url, script string, d time.Duration, conns int) []string {
	return []string{"-t", strconv.Itoa(min(w.o.threads, conns)), "-c", strconv.Itoa(conns),
		"-d", wrkDuration(d), "--timeout", "5s", "--latency", "-s", script, url}
}

// wrkDuration writes d the way wrk reads it: whole seconds (wrk rejects Go's "1h0m0s").
func wrkDuration(d time.Duration) string {
	return strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second))) + "s"
}

// start runs wrk in the background until stop, which interrupts it (wrk then
// prints its statistics for the time it ran).
func (w *wrkRunner) start(name, url, script string, conns int) (stop func() (load, error), err error) {
	cmd := exec.Command("wrk", w.args(url, script, time.Hour, conns)...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() (load, error) {
		_ = cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			return load{}, fmt.Errorf("wrk %s: %v\n%s", name, err, out.String())
		}
		l, err := parseWrk(name, out.String())
		l.conns = conns
		return l, err
	}, nil
}

func parseWrk(name, text string) (load, error) {
	l := load{name: name}
	m := reqsPerSec.FindStringSubmatch(text)
	if m == nil {
		return l, fmt.Errorf("wrk %s: no Requests/sec in output:\n%s", name, text)
	}
	l.rps, _ = strconv.ParseFloat(m[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}
	for _, pm := range percentile.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(pm[2], 64)
		d := time.Duration(v * float64(unit[pm[3]]))
		if pm[1] == "50" {
			l.p50 = d
		} else {
			l.p99 = d
		}
	}
	if m := totalReqs.FindStringSubmatch(text); m != nil {
		l.requests, _ = strconv.ParseInt(m[1], 10, 64)
		v, _ := strconv.ParseFloat(m[2], 64)
		l.elapsed = time.Duration(v * float64(unit[m[3]]))
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
