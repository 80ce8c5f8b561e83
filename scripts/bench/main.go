// Command bench measures vault-apikeys side by side with Vault's own endpoints
// and a bare Go handler, in one run on this machine, and prints ratios (and
// writes BENCHMARKS.md). Everything runs on loopback, is bounded in requests
// and time, and stops by itself. Run it with `make bench`.
package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

type options struct {
	duration     time.Duration
	coldDuration time.Duration
	connections  int
	threads      int
	fill         int
	measured     int
	hot          int
	revocations  int
	out          string
	verifierArg  string
	scale        int
	scaleStorage string
	writeConns   int
	memoryKeys   int
	only         string
	rounds       int
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "length of each wrk run")
	flag.IntVar(&o.connections, "connections", 32, "concurrent connections for every HTTP load")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.IntVar(&o.fill, "fill", 56000, "keys stored before issuance is measured (with the measured keys outside the hot set: the cold set, shared out among the rounds; a cold round that runs out of them is reported as overstated)")
	flag.IntVar(&o.measured, "measured", 5000, "keys issued while measuring issuance (the hot set comes from them)")
	flag.DurationVar(&o.coldDuration, "cold-duration", 2*time.Second, "length of the cold run (bounded by the number of never-seen keys)")
	flag.IntVar(&o.hot, "hot", 1000, "working set of the hot verify load")
	flag.IntVar(&o.revocations, "revocations", 600, "revocations measured under load, taken from the hot set (its p99 is the 6th worst of 600; of 200 it was the 2nd, and one run to the next moved it by 2x)")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "where to write the report (empty: stdout only)")
	flag.StringVar(&o.verifierArg, "verifier-flags", "", "extra flags for the verifier, space-separated")
	flag.IntVar(&o.writeConns, "write-connections", 16, "concurrent connections for the write loads (issuance, KV v2 write, plugin floor, contract minimum)")
	flag.IntVar(&o.memoryKeys, "memory-keys", 1_000_000, "keys cached by the verifier memory benchmark (0 skips it)")
	flag.StringVar(&o.only, "only", "", "run only the loads whose names match this regular expression, and no propagation run unless the hot load is one (for profiling: the report lacks the rest)")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds of the repeatable loads, interleaved; each load's best round is reported")
	flag.IntVar(&o.scale, "scale", 0, "instead of the side-by-side loads: issuance and listing with this many keys stored (make bench-scale)")
	flag.StringVar(&o.scaleStorage, "scale-storage", "raft-ram", "Vault's storage for -scale: raft (one node on disk, as in production), raft-ram (the same on the RAM disk /dev/shm) or inmem (the dev server's default, which keeps every entry in Vault's heap)")
	flag.Parse()
	if o.revocations >= o.hot {
		fmt.Fprintf(os.Stderr, "bench: -revocations (%d) must be below -hot (%d): the paced load runs on the hot keys that are not revoked\n", o.revocations, o.hot)
		os.Exit(2)
	}

	s := vaulttest.NewSession()
	defer s.Close()
	if o.scale > 0 {
		report, err := runScale(s, o)
		if err != nil {
			s.Fatal(err)
		}
		fmt.Println(report)
		if o.out != "" {
			if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
				s.Fatal(err)
			}
		}
		return
	}
	r, err := run(s, o)
	if err != nil {
		s.Fatal(err)
	}
	report := r.markdown(o)
	fmt.Println(report)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(report), 0o644); err != nil {
			s.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", o.out)
	}
}

type issued struct{ name, key string }

type results struct {
	machine                string
	loads                  []load
	fillRate, measuredRate float64
	listFirstPage          time.Duration
	usage                  usageCost
	propagation            propagationResult
	coldKeysUsed           int64
	coldKeysTotal          int
	memory                 []memoryResult
	memoryErr              error
}

// Names of the loads; the report's ratios and targets refer to them.
const (
	loadBare    = "bare Go handler (body scan + SHA-256 + sync.Map)"
	loadHot     = "verifier, hot (cached)"
	loadCold    = "verifier, cold (never-seen keys)"
	loadToken   = "Vault auth/token/lookup-self"
	loadTransit = "Vault transit/verify (HMAC)"
	loadKVRead  = "Vault KV v2 read"
	loadKVPol   = "Vault KV v2 read, least-privilege token"
	loadIssue   = "issuance: POST apikeys/tenants/acme/keys/<new name>"
	loadKVWrite = "Vault KV v2 write (new path each)"
	loadFloor   = "plugin floor: bench/floor/<new name> (one storage put)"
	// loadContract is the least a create can write while a change reaches the
	// feed only after its record is written (a record and a name side by side,
	// then a feed entry, then the event), with no other work: a bound on
	// issuance, not a target.
	loadContract = "contract minimum: bench/contract/<new name> (record ‖ name, feed entry, event)"
)

// load returns the named load (zero if it did not run).
func (r *results) load(name string) load {
	for _, l := range r.loads {
		if l.name == name {
			return l
		}
	}
	return load{name: name}
}

func run(s *vaulttest.Session, o options) (*results, error) {
	res := &results{machine: machineInfo()}
	step := func(msg string) { fmt.Fprintf(os.Stderr, "bench: %s\n", msg) }
	dir := s.TempDir()

	step("building the plugin's bench-only floor build (-tags benchfloor)")
	if err := buildFloorPlugin(s); err != nil {
		return nil, err
	}
	step("starting a Vault dev server with transit and the plugin")
	v := vaulttest.Start(s)
	root := http.Header{"X-Vault-Token": {v.RootToken}}
	must := func(_ []byte, err error) {
		if err != nil {
			s.Fatal(err)
		}
	}
	must(vaultDo(v.Addr, "POST", "apikeys/config", root, map[string]interface{}{"max_keys": 0, "max_keys_per_tenant": 0}))
	must(vaultDo(v.Addr, "POST", "apikeys/roles/bench", root, map[string]interface{}{"permissions": "clusters:read,clusters:write", "allowed_workspaces": "*"}))
	must(vaultDo(v.Addr, "POST", "sys/mounts/"+floorMount, root, map[string]interface{}{"type": floorPlugin}))

	step(fmt.Sprintf("issuing %d keys at concurrency 16 (fill)", o.fill))
	cold, rate, err := issue(v.Addr, v.RootToken, "fill", o.fill, 16, benchTenant)
	if err != nil {
		return nil, err
	}
	res.fillRate = rate
	step(fmt.Sprintf("  %.0f keys/s", rate))
	step(fmt.Sprintf("issuing %d more keys at concurrency 16 with %d stored (measured)", o.measured, o.fill))
	hot, rate, err := issue(v.Addr, v.RootToken, "hot", o.measured, 16, benchTenant)
	if err != nil {
		return nil, err
	}
	res.measuredRate = rate
	step(fmt.Sprintf("  %.0f keys/s", rate))
	start := time.Now()
	must(vaultDo(v.Addr, "LIST", "apikeys/tenants/acme/keys?limit=100", root, nil))
	res.listFirstPage = time.Since(start)

	verifier := startVerifier(s, v, dir, strings.Fields(o.verifierArg))
	verifierURL, verifierAudit := verifier.URL, verifier.Audit
	// Never-verified keys: the fill plus the measured keys outside the hot set.
	cold = append(cold, hot[o.hot:]...)
	hot = hot[:o.hot]
	bareURL, barePid, err := startBare(s, dir, hot)
	if err != nil {
		return nil, err
	}
	// The process serving each load that Vault does not serve itself.
	server := map[string]int{loadBare: barePid, loadHot: verifier.Cmd.Process.Pid, loadCold: verifier.Cmd.Process.Pid}
	hotFile := writeKeys(dir, "hot.txt", hot[o.revocations:])
	// Each round's cold load has never-verified keys of its own.
	perRound := len(cold) / max(1, o.rounds)
	coldFiles := make([]string, o.rounds)
	for i := range coldFiles {
		coldFiles[i] = writeKeys(dir, fmt.Sprintf("cold%d.txt", i+1), cold[i*perRound:(i+1)*perRound])
	}

	step("warming the verifier's cache with the hot set")
	for _, k := range hot {
		code, err := verifyCode(verifierURL, k.key)
		if err != nil || code != "VALID" {
			return nil, fmt.Errorf("warm-up verify answered %q, %v", code, err)
		}
	}

	vaultToken := v.TokenFromFile(s, "policies/verifier.hcl")
	hmacBody := prepareVaultEndpoints(s, v)
	// A reader's token as the verifier's is: one policy, no default policy.
	kvToken := v.Token(s, `path "secret/data/bench" { capabilities = ["read"] }`)
	w := &wrkRunner{dir: dir, o: o}
	// Reads first, then writes: the writes add keys and feed entries the
	// verifier follows, which must not disturb the read loads.
	type run struct {
		name, url, script string
		d                 time.Duration
		conns             int
	}
	// Each round runs every load once, in this order; a load's best round is
	// reported, so a burst of outside work on the machine during one run does
	// not decide a ratio. Writes use new names each round, and the cold load
	// its own share of the never-verified keys.
	rounds := func(round int) []run {
		p := fmt.Sprintf("r%d-", round)
		return []run{
			{loadBare, bareURL + "/v1/verify", w.postKeys(hotFile, false), o.duration, o.connections},
			{loadHot, verifierURL + "/v1/verify", w.postKeys(hotFile, false), o.duration, o.connections},
			{loadCold, verifierURL + "/v1/verify", w.postKeys(coldFiles[round-1], true), o.coldDuration, o.connections},
			{loadToken, v.Addr + "/v1/auth/token/lookup-self", w.get(vaultToken), o.duration, o.connections},
			{loadTransit, v.Addr + "/v1/transit/verify/bench-hmac", w.postBody(v.RootToken, hmacBody), o.duration, o.connections},
			{loadKVRead, v.Addr + "/v1/secret/data/bench", w.get(v.RootToken), o.duration, o.connections},
			{loadKVPol, v.Addr + "/v1/secret/data/bench", w.get(kvToken), o.duration, o.connections},
			// Writes after reads: they add keys and feed entries the verifier follows.
			{loadIssue, v.Addr, w.postNew(v.RootToken, "/v1/apikeys/tenants/acme/keys/"+p, `{"role":"bench"}`), o.duration, o.writeConns},
			{loadKVWrite, v.Addr, w.postNew(v.RootToken, "/v1/secret/data/bench-w/"+p, `{"data":{"k":"v"}}`), o.duration, o.writeConns},
			{loadFloor, v.Addr, w.postNew(v.RootToken, "/v1/"+floorMount+"/bench/floor/"+p, `{}`), o.duration, o.writeConns},
			{loadContract, v.Addr, w.postNew(v.RootToken, "/v1/"+floorMount+"/bench/contract/"+p, `{}`), o.duration, o.writeConns},
		}
	}
	only, err := regexp.Compile(o.only)
	if err != nil {
		return nil, fmt.Errorf("-only: %w", err)
	}
	meter := vaultMeter{pid: v.Pid()}
	best := map[string]int{} // load name → index in res.loads
	for round := 1; round <= o.rounds; round++ {
		for _, r := range rounds(round) {
			if !only.MatchString(r.name) {
				continue
			}
			step(fmt.Sprintf("wrk (round %d of %d): %s", round, o.rounds, r.name))
			pid := server[r.name]
			cpuBefore, serverBefore := meter.used(), procCPU(pid)
			writesBefore := storageWrites(v.Addr, v.RootToken)
			var lookupsBefore, keysBefore float64
			if r.name == loadCold {
				lookupsBefore, keysBefore = lookupBatches(verifierURL)
			}
			l, err := w.run(r.name, r.url, r.script, r.d, r.conns)
			if err != nil {
				return nil, err
			}
			l.vaultCPU = meter.used() - cpuBefore
			l.storageWrites = -1
			if after := storageWrites(v.Addr, v.RootToken); writesBefore >= 0 && after >= 0 {
				l.storageWrites = after - writesBefore
			}
			if pid != 0 {
				l.serverCPU = procCPU(pid) - serverBefore
			}
			if r.name == loadCold {
				lookups, keys := lookupBatches(verifierURL)
				l.lookups, l.lookupKeys = lookups-lookupsBefore, keys-keysBefore
				// Every cold key is new to the verifier's usage report, which
				// costs Vault more than the lookups (measureUsage): let it end
				// before the next load, or that load carries it.
				step("waiting for the verifier to report the cold keys' use")
				if err := awaitUsageFlush(verifierURL, 40*time.Second); err != nil {
					step(err.Error() + ": the next load may carry part of it")
				}
			}
			i, seen := best[r.name]
			if !seen {
				best[r.name] = len(res.loads)
				l.runs = []float64{l.rps}
				res.loads = append(res.loads, l)
				continue
			}
			// Errors of every round count; the rest is the best round's.
			prev := res.loads[i]
			l.runs, l.errors = append(prev.runs, l.rps), l.errors+prev.errors
			if l.rps < prev.rps {
				prev.runs, prev.errors = l.runs, l.errors
				l = prev
			}
			res.loads[i] = l
		}
	}
	res.coldKeysTotal = perRound
	res.coldKeysUsed = res.load(loadCold).requests // the best round's
	if only.MatchString(loadCold) {
		step(fmt.Sprintf("usage reports for %d keys, as the verifier sends them", usageKeys))
		if res.usage, err = measureUsage(v.Addr, vaultToken, meter, cold); err != nil {
			return nil, err
		}
	}

	hotLoad := res.load(loadHot)
	if hotLoad.rps == 0 || o.revocations == 0 {
		return res, nil
	}
	step(fmt.Sprintf("revoking %d cached keys under a paced load at half the hot maximum (%.0f req/s)", o.revocations, hotLoad.rps/2))
	// The calibration revokes spare keys from the cold set, first verified by
	// the cold load (and so mostly cached), as the measured run revokes its victims.
	res.propagation, err = propagation(w, v.Addr, v.RootToken, verifierURL, verifierAudit, hot[:o.revocations], cold, hotFile, hotLoad.rps/2)
	if err != nil {
		return nil, err
	}

	if o.memoryKeys > 0 {
		step(fmt.Sprintf("verifier memory benchmark with %d cached keys (go test)", o.memoryKeys))
		res.memory, res.memoryErr = memoryBench(o.memoryKeys)
		if res.memoryErr != nil {
			step("memory benchmark failed: " + res.memoryErr.Error())
		}
	}
	return res, nil
}

// vaultDo sends one request to Vault and returns the body, failing on a non-2xx.
func vaultDo(addr, method, path string, h http.Header, body interface{}) ([]byte, error) {
	return vaultDoStatus(addr, method, path, h, body, 0)
}

// vaultDoStatus is vaultDo expecting the status want (0: any success).
func vaultDoStatus(addr, method, path string, h http.Header, body interface{}, want int) ([]byte, error) {
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, addr+"/v1/"+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if (want == 0 && resp.StatusCode >= 300) || (want != 0 && resp.StatusCode != want) {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, buf.String())
	}
	return buf.Bytes(), nil
}

// benchTenant is the tenant the side-by-side loads issue their keys in.
func benchTenant(int) string { return "acme" }

// inParallel runs do(0..n-1) on workers goroutines and returns the rate of
// completed calls per second, or the first error (the rest then stop).
func inParallel(n, workers int, do func(i int) error) (float64, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				if err := do(i); err != nil {
					firstErr.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// issue creates n keys at the given concurrency, key i in tenant(i), and
// returns them with the rate.
func issue(addr, token, prefix string, n, workers int, tenant func(i int) string) ([]issued, float64, error) {
	out := make([]issued, n)
	h := http.Header{"X-Vault-Token": {token}, "Content-Type": {"application/json"}}
	rate, err := inParallel(n, workers, func(i int) error {
		name := fmt.Sprintf("%s-%07d", prefix, i)
		body, err := vaultDo(addr, "POST", "apikeys/tenants/"+tenant(i)+"/keys/"+name, h, map[string]interface{}{"role": "bench"})
		if err != nil {
			return err
		}
		var resp struct {
			Data struct {
				Key string `json:"key"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			return err
		}
		out[i] = issued{name, resp.Data.Key}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, rate, nil
}

func writeKeys(dir, name string, keys []issued) string {
	path := filepath.Join(dir, name)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.key + "\n")
	}
	_ = os.WriteFile(path, []byte(b.String()), 0o600)
	return path
}

// startVerifier runs the verifier binary as e2e does, with a least-privilege
// token and usage flushed every 10 s (a report per run, not per second).
func startVerifier(s *vaulttest.Session, v *vaulttest.Vault, dir string, extra []string) *vaulttest.Verifier {
	tokenFile := filepath.Join(dir, "verifier-token")
	if err := os.WriteFile(tokenFile, []byte(v.TokenFromFile(s, "policies/verifier.hcl")), 0o600); err != nil {
		s.Fatal(err)
	}
	return vaulttest.StartVerifier(s, dir, v.Addr, tokenFile, append([]string{"-usage-flush", "10s"}, extra...)...)
}

func startBare(s *vaulttest.Session, dir string, keys []issued) (url string, pid int, err error) {
	bin := filepath.Join(dir, "bare")
	if out, err := exec.Command("go", "build", "-o", bin, "./scripts/bench/bare").CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("build bare handler: %v\n%s", err, out)
	}
	port := vaulttest.FreePort(s)
	cmd := exec.Command(bin, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-keys", writeKeys(dir, "bare-keys.txt", keys))
	if err := cmd.Start(); err != nil {
		return "", 0, err
	}
	s.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if resp, err := http.Post(url+"/v1/verify", "application/json", strings.NewReader(`{"key":"x"}`)); err == nil {
			resp.Body.Close()
			return url, cmd.Process.Pid, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", 0, fmt.Errorf("bare handler did not start")
}

var verifyClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 5 * time.Second}

func verifyCode(url, key string) (string, error) {
	resp, err := verifyClient.Post(url+"/v1/verify", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	return out.Code, nil
}

// prepareVaultEndpoints creates the HMAC key and KV entry the comparison loads
// read, and returns the transit/verify request body.
func prepareVaultEndpoints(s *vaulttest.Session, v *vaulttest.Vault) string {
	root := http.Header{"X-Vault-Token": {v.RootToken}}
	if _, err := vaultDo(v.Addr, "POST", "transit/keys/bench-hmac", root, nil); err != nil {
		s.Fatal(err)
	}
	input := base64.StdEncoding.EncodeToString([]byte("vak_bench_input"))
	body, err := vaultDo(v.Addr, "POST", "transit/hmac/bench-hmac", root, map[string]interface{}{"input": input})
	if err != nil {
		s.Fatal(err)
	}
	var h struct {
		Data struct {
			HMAC string `json:"hmac"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &h)
	if _, err := vaultDo(v.Addr, "POST", "secret/data/bench", root, map[string]interface{}{"data": map[string]string{"k": "v"}}); err != nil {
		s.Fatal(err)
	}
	raw, _ := json.Marshal(map[string]string{"input": input, "hmac": h.Data.HMAC})
	return string(raw)
}

func machineInfo() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "model name") {
				cpu = strings.TrimSpace(strings.SplitN(sc.Text(), ":", 2)[1])
				break
			}
		}
		f.Close()
	}
	vaultVersion := "?"
	if bin, err := vaulttest.FindVault(); err == nil {
		if out, err := exec.Command(bin, "version").Output(); err == nil {
			vaultVersion = strings.TrimSpace(string(out))
		}
	}
	return fmt.Sprintf("%d cores (%s), %s, %s/%s, %s", runtime.NumCPU(), cpu, runtime.Version(), runtime.GOOS, runtime.GOARCH, vaultVersion)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) + " ms"
}
