package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
	"github.com/vault-apikeys/vault-apikeys/token"
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
	// applied: the end of the verifier's first decision made at the
	// revocation's feed position or past it (firstApplied), sorted.
	applied    []time.Duration
	latencies  []time.Duration // the verifier's first REVOKED decision, sorted
	answered   []time.Duration // the first REVOKED answer received by the prober, sorted
	failures   int
	unapplied  int // revocations no decision was made at or past
	targetRate float64
	background load // the paced load as wrk measured it
	delayMs    int
	// feedLag counts the verifier's feed_lag_seconds observations made during
	// the revocations: each change's append in the plugin to its application
	// in the verifier, before any check of the key.
	feedLag lagCounts
}

// lagCounts is the delta of the verifier's feed-lag histogram over a run:
// observations in all, and those within each bucket bound (seconds, as the
// metric's le label writes it).
type lagCounts struct {
	total  float64
	within map[string]float64
}

// feedLagMetric is the verifier's histogram of feed lag (verifier/metrics.go).
const feedLagMetric = "apikeys_verifier_feed_lag_seconds"

// scrapeFeedLag reads the verifier's feed-lag histogram from its /metrics.
func scrapeFeedLag(verifierURL string) (lagCounts, error) {
	samples, err := scrapeMetrics(verifierURL)
	if err != nil {
		return lagCounts{}, err
	}
	return feedLagOf(samples)
}

// lookupBatches is how many lookup requests the verifier has sent Vault so
// far and how many keys they asked for (0, 0 when its metrics cannot be read).
func lookupBatches(verifierURL string) (lookups, keys float64) {
	samples, err := scrapeMetrics(verifierURL)
	if err != nil {
		return 0, 0
	}
	return samples[lookupBatchMetric+"_count"], samples[lookupBatchMetric+"_sum"]
}

// scrapeMetrics reads the verifier's /metrics: each sample's value by its
// name, labels included as written (`name{label="v"}`).
func scrapeMetrics(verifierURL string) (map[string]float64, error) {
	return scrape(verifierURL+"/metrics", "")
}

// scrape reads the samples of a Prometheus text endpoint, with a Vault token
// when token is set.
func scrape(url, token string) (map[string]float64, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := verifyClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseSamples(string(body)), nil
}

// parseSamples reads the Prometheus text format's sample lines.
func parseSamples(text string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// feedLagOf takes the feed-lag histogram's buckets and count out of the samples.
func feedLagOf(samples map[string]float64) (lagCounts, error) {
	out := lagCounts{within: map[string]float64{}}
	total, seen := samples[feedLagMetric+"_count"]
	if !seen {
		return out, fmt.Errorf("no %s in the verifier's metrics", feedLagMetric)
	}
	out.total = total
	for name, v := range samples {
		if le, ok := strings.CutPrefix(name, feedLagMetric+`_bucket{le="`); ok {
			out.within[strings.TrimSuffix(le, `"}`)] = v
		}
	}
	return out, nil
}

// usageReportsMetric counts the verifier's usage writes to Vault, each of up
// to 1,000 keys (verifier/metrics.go, verifier/usage.go).
const usageReportsMetric = `apikeys_verifier_vault_request_duration_seconds_count{op="usage"}`

// lookupBatchMetric is the verifier's histogram of keys per lookup request.
const lookupBatchMetric = "apikeys_verifier_lookup_batch_size"

// awaitUsageFlush waits for the verifier's next usage report to end: its
// first write after now, then until no write has followed for a second (a
// report's writes go one after another). It gives up after limit, saying so.
func awaitUsageFlush(verifierURL string, limit time.Duration) error {
	samples, err := scrapeMetrics(verifierURL)
	if err != nil {
		return err
	}
	last, lastChange, started := samples[usageReportsMetric], time.Now(), false
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if samples, err = scrapeMetrics(verifierURL); err != nil {
			return err
		}
		if n := samples[usageReportsMetric]; n != last {
			last, lastChange, started = n, time.Now(), true
		} else if started && time.Since(lastChange) >= time.Second {
			return nil
		}
	}
	return fmt.Errorf("the verifier's usage report did not end within %s", limit)
}

// since is what was observed between before and c.
func (c lagCounts) since(before lagCounts) lagCounts {
	out := lagCounts{total: c.total - before.total, within: map[string]float64{}}
	for le, v := range c.within {
		out.within[le] = v - before.within[le]
	}
	return out
}

// Pacing: every connection waits pacedDelayMs on average after each answer (a
// random pause: see wrkRunner.paced), so n connections make about
// n·1000/(pacedDelayMs+pacedOverheadMs) requests a second. A long pause keeps
// the rate insensitive to the service time; the overhead (wrk's millisecond
// timer plus the answer, 21.3 ms a cycle measured on loopback) errs towards a
// little more load than the target, not less.
// The prober asks about its key every probeEvery, so that it measures the
// verifier rather than adding a core's worth of load to it.
const (
	pacedDelayMs    = 20
	pacedOverheadMs = 1.0
	calibrationRuns = 5
	// The paced load aims at calibrationAim × the target rate and is taken
	// once a calibration run, with revocations and probes running beside it
	// as in the measured run, lands within [calibrationLow, calibrationHigh]×:
	// a little over the target, so the measured run reaches it, but not so far
	// over it that the verifier is measured at a load the target does not name.
	// (Calibrated without them, the measured run reached 93% of the target in
	// two runs of three: the revocations took that share of the machine.)
	calibrationAim, calibrationLow, calibrationHigh = 1.04, 1.0, 1.1
	probeEvery                                      = time.Millisecond
	// calibrationSpare bounds the spare keys revoked beside the calibration
	// runs: more than calibrationRuns runs of 3 s use at a few hundred a second.
	calibrationSpare = 4000
)

// calibrated says whether conns connections, which achieved rps, load the
// verifier within the accepted band around rate; if not, it returns the
// connections that should reach calibrationAim × rate (a step is at most 2×
// up, as a run far below the rate may have been starved).
func calibrated(conns int, rps, rate float64) (int, bool) {
	ratio := rps / rate
	if ratio >= calibrationLow && ratio <= calibrationHigh {
		return conns, true
	}
	return max(1, int(math.Round(float64(conns)*min(2, calibrationAim/ratio)))), false
}

// propagation revokes each victim (cached by the verifier) while wrk sends a
// paced load of other keys at rate. For each it measures from the delete
// returning to the verifier applying it (firstApplied), to the verifier's
// first REVOKED decision for the prober (the time its audit line gives: when
// it began handling the first probe it refused), and to the prober receiving
// that answer. The load wrk actually achieved is reported beside the target.
// The calibration runs revoke spare keys (active keys outside the hot set) as
// the measured run revokes its victims, so the load is calibrated with the
// revocations and the prober taking their share of the machine.
func propagation(w *wrkRunner, addr, vaultToken, verifierURL, auditLog string, victims, spare []issued, backgroundKeys string, rate float64) (propagationResult, error) {
	res := propagationResult{targetRate: rate, delayMs: pacedDelayMs}
	script := w.paced(w.postKeys(backgroundKeys, false), pacedDelayMs)
	url := verifierURL + "/v1/verify"
	conns := max(1, int(math.Ceil(rate*(pacedDelayMs+pacedOverheadMs)/1000)))
	h := http.Header{"X-Vault-Token": {vaultToken}}
	// Spare keys are cached first, as the victims are, so revoking one costs
	// what revoking a victim does.
	spare = spare[:min(len(spare), calibrationSpare)]
	for _, k := range spare {
		if _, err := verifyCode(verifierURL, k.key); err != nil {
			return res, err
		}
	}
	// Calibrate: a loaded server answers slower than the estimate assumes, so
	// short paced runs scale the connections, up or down, until one lands in
	// the accepted band (at most calibrationRuns runs).
	for i := 0; i < calibrationRuns; i++ {
		stopSide, sideDone := make(chan struct{}), make(chan []issued)
		go func(keys []issued) {
			defer func() { sideDone <- keys }() // the keys left for the next run
			for len(keys) > 0 {
				select {
				case <-stopSide:
					return
				default:
				}
				_, _ = revokeAndProbe(addr, h, verifierURL, keys[0])
				keys = keys[1:]
			}
			<-stopSide
		}(spare)
		probe, err := w.run("paced calibration", url, script, 3*time.Second, conns)
		close(stopSide)
		spare = <-sideDone
		if err != nil || probe.rps <= 0 {
			break
		}
		next, ok := calibrated(conns, probe.rps, rate)
		if ok {
			break
		}
		conns = next
	}
	stop, err := w.start("paced background", url, script, conns)
	if err != nil {
		return res, err
	}
	time.Sleep(500 * time.Millisecond) // let every connection open and settle into its pace
	lagBefore, err := scrapeFeedLag(verifierURL)
	if err != nil {
		_, _ = stop()
		return res, err
	}
	deleted := map[string]time.Time{} // key_id → when its delete returned
	bySeq := map[uint64]time.Time{}   // the revocation's feed seq → the same
	for _, k := range victims {
		p, err := revokeAndProbe(addr, h, verifierURL, k)
		if err != nil {
			_, _ = stop()
			return res, err
		}
		if p.deleted.IsZero() {
			res.failures++
			continue
		}
		deleted[p.keyID] = p.deleted
		bySeq[p.seq] = p.deleted
		if p.answered == 0 {
			res.failures++
			continue
		}
		res.answered = append(res.answered, p.answered)
	}
	lagAfter, err := scrapeFeedLag(verifierURL)
	if err != nil {
		_, _ = stop()
		return res, err
	}
	res.feedLag = lagAfter.since(lagBefore)
	if res.background, err = stop(); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "bench:   paced load: %d connections, %.0f of %.0f req/s\n", conns, res.background.rps, rate)
	time.Sleep(300 * time.Millisecond) // the verifier flushes its audit lines every 100 ms
	refusals, applied := newFirstRefusals(deleted), newFirstApplied(bySeq)
	if err := scanAudit(auditLog, refusals.add, applied.add); err != nil {
		return res, err
	}
	res.latencies = refusals.delays()
	if len(res.latencies) != len(res.answered) {
		return res, fmt.Errorf("the audit log has %d first REVOKED decisions for %d answers", len(res.latencies), len(res.answered))
	}
	res.applied, res.unapplied = applied.delays()
	for _, d := range [][]time.Duration{res.applied, res.answered, res.latencies} {
		slices.Sort(d)
	}
	return res, nil
}

// revoked is one revocation as the prober saw it: when its delete returned
// (zero when the key was not cached and valid, or the delete failed) and how
// long after that the verifier's answer said REVOKED (0: not within 2 s).
type revoked struct {
	keyID    string
	seq      uint64 // the revocation's feed entry, as the delete answered it
	deleted  time.Time
	answered time.Duration
}

// revokeAndProbe checks that k is valid (so the verifier has it cached),
// deletes it, then asks the verifier about it every probeEvery, for at most
// 2 s, until it answers REVOKED.
func revokeAndProbe(addr string, h http.Header, verifierURL string, k issued) (revoked, error) {
	tok, err := token.Parse(k.key)
	if err != nil {
		return revoked{}, err
	}
	out := revoked{keyID: tok.KeyID}
	if code, _ := verifyCode(verifierURL, k.key); code != "VALID" {
		return out, nil
	}
	body, err := vaultDo(addr, "DELETE", "apikeys/tenants/acme/keys/"+k.name, h, nil)
	if err != nil {
		return out, nil
	}
	out.deleted = time.Now()
	var answer struct {
		Data struct {
			Seq uint64 `json:"seq"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.Data.Seq == 0 {
		return out, fmt.Errorf("the delete of %s answered no feed seq", k.name)
	}
	out.seq = answer.Data.Seq
	for time.Since(out.deleted) < 2*time.Second {
		if code, _ := verifyCode(verifierURL, k.key); code == "REVOKED" {
			out.answered = time.Since(out.deleted)
			return out, nil
		}
		time.Sleep(probeEvery)
	}
	return out, nil
}

// auditRecord is what the bench reads of one of the verifier's audit lines.
type auditRecord struct {
	Time      time.Time `json:"time"`
	KeyID     string    `json:"key_id"`
	Code      string    `json:"code"`
	LatencyMS float64   `json:"latency_ms"`
	FeedSeq   uint64    `json:"feed_seq"`
}

// scanAudit reads the verifier's audit log once, handing every decision to
// each reader in turn.
func scanAudit(auditLog string, readers ...func(auditRecord)) error {
	f, err := os.Open(auditLog)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line auditRecord
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		for _, read := range readers {
			read(line)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read the verifier's audit log: %w", err)
	}
	return nil
}

// keepEarliest keeps under k the earlier of t and what m already holds.
func keepEarliest[K comparable](m map[K]time.Time, k K, t time.Time) {
	if old, ok := m[k]; !ok || t.Before(old) {
		m[k] = t
	}
}

// firstRefusals finds, for each key_id in deleted (→ when its delete
// returned), its first REVOKED decision in the audit log (read by add).
type firstRefusals struct {
	deleted map[string]time.Time
	first   map[string]time.Time
}

func newFirstRefusals(deleted map[string]time.Time) *firstRefusals {
	return &firstRefusals{deleted: deleted, first: map[string]time.Time{}}
}

func (f *firstRefusals) add(line auditRecord) {
	if _, ok := f.deleted[line.KeyID]; !ok || line.Code != "REVOKED" {
		return
	}
	keepEarliest(f.first, line.KeyID, line.Time)
}

// delays is, for each key refused, the time from its delete returning to its
// first REVOKED decision.
func (f *firstRefusals) delays() []time.Duration {
	out := make([]time.Duration, 0, len(f.first))
	for id, at := range f.first {
		out = append(out, max(0, at.Sub(f.deleted[id])))
	}
	return out
}

// firstApplied finds, for each revocation in bySeq (its feed seq → when its
// delete returned), the end of the verifier's first decision, on any key, made
// at that feed position or past it (read by add). That decision read a cursor
// that had applied the revocation (the follower moves its cursor after a
// change's eviction), so by its end the key was refused to every request: a
// bound on when the revocation took effect, whoever asked, close to the moment
// under load, when decisions are microseconds apart.
type firstApplied struct {
	bySeq    map[uint64]time.Time
	earliest map[uint64]time.Time // feed position → earliest end of a decision made at it
}

func newFirstApplied(bySeq map[uint64]time.Time) *firstApplied {
	return &firstApplied{bySeq: bySeq, earliest: map[uint64]time.Time{}}
}

func (f *firstApplied) add(line auditRecord) {
	keepEarliest(f.earliest, line.FeedSeq, line.Time.Add(time.Duration(line.LatencyMS*float64(time.Millisecond))))
}

// delays is, for each revocation a decision was made at or past, the time from
// its delete returning to that decision's end; unseen counts the others.
func (f *firstApplied) delays() (out []time.Duration, unseen int) {
	seqs := slices.Sorted(maps.Keys(f.earliest))
	// from[i]: the earliest end of a decision made at seqs[i] or past it.
	from := make([]time.Time, len(seqs))
	for i := len(seqs) - 1; i >= 0; i-- {
		from[i] = f.earliest[seqs[i]]
		if i+1 < len(seqs) && from[i+1].Before(from[i]) {
			from[i] = from[i+1]
		}
	}
	for seq, deleted := range f.bySeq {
		i, _ := slices.BinarySearch(seqs, seq)
		if i == len(seqs) {
			unseen++
			continue
		}
		out = append(out, max(0, from[i].Sub(deleted)))
	}
	return out, unseen
}
