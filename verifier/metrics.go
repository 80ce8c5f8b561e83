package verifier

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// Version is the verifier's release, stamped at build time:
//
//	go build -ldflags "-X github.com/vault-apikeys/vault-apikeys/verifier.Version=v1.2.3"
//
// (make build stamps `git describe --tags --always --dirty`).
var Version = "dev"

// codeUnavailable labels answers that were not decided (503).
const codeUnavailable = "UNAVAILABLE"

// metrics are the verifier's Prometheus series, in a registry of its own so
// several verifiers can live in one process. No label ever holds a token.
// Nor a tenant, a key_id or a workspace: a mount holds 100,000 tenants and a
// million keys, and a series per tenant would swamp Prometheus (and cost the
// hot path a label lookup). Per-tenant counts come from the audit log, whose
// lines carry the tenant.
type metrics struct {
	reg          *prometheus.Registry
	decisions    map[Code]prometheus.Counter // resolved up front: no lookup by label on the hot path
	unavailable  prometheus.Counter
	cacheHits    prometheus.Counter
	cacheMisses  prometheus.Counter
	staleServed  prometheus.Counter
	vaultLatency *prometheus.HistogramVec
	vaultErrors  *prometheus.CounterVec
	lookupBatch  prometheus.Histogram
	feedChanges  prometheus.Counter
	feedResets   prometheus.Counter
	feedLag      prometheus.Histogram
	usageDropped prometheus.Counter
	// latency is resolved per endpoint and code up front, like decisions.
	latency map[string]map[Code]prometheus.Observer
}

const ns = "apikeys_verifier"

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help})
		f(c)
		return c
	}
	m := &metrics{reg: reg, decisions: make(map[Code]prometheus.Counter)}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "decisions_total",
		Help: "Decided verifications by code."}, []string{"code"})
	f(decisions)
	for _, c := range verdict.Codes() {
		m.decisions[c] = decisions.WithLabelValues(string(c))
	}
	m.unavailable = counter("unavailable_total", "Verifications answered 503 (fail closed): Vault or the feed unreachable.")
	m.cacheHits = counter("cache_hits_total", "Verifications answered from the cache.")
	m.cacheMisses = counter("cache_misses_total", "Verifications that needed a lookup in Vault.")
	m.staleServed = counter("stale_served_total", "Verifications answered from the cache while the feed was failing (within stale-if-error).")
	m.vaultLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "vault_request_duration_seconds",
		Help:    "Latency of requests to Vault by operation (changes includes the long-poll wait).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}, []string{"op"})
	f(m.vaultLatency)
	m.vaultErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "vault_errors_total",
		Help: "Failed requests to Vault by operation."}, []string{"op"})
	f(m.vaultErrors)
	m.lookupBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "lookup_batch_size",
		Help: "Key ids per lookup request to Vault.", Buckets: []float64{1, 2, 5, 10, 25, 50, 100}})
	f(m.lookupBatch)
	m.feedChanges = counter("feed_changes_total", "Changes applied from the plugin's feed.")
	m.feedResets = counter("feed_resets_total", "Feed resets (the cache was flushed).")
	m.feedLag = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "feed_lag_seconds",
		Help:    "Time from a change in Vault to its eviction here (includes clock skew); key creations, which evict nothing, are not counted.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}})
	f(m.feedLag)
	m.usageDropped = counter("usage_dropped_total", "Key uses not counted because the usage buffer was full.")
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
		Help:    "Time to answer a verification, by endpoint (verify, auth) and code (UNAVAILABLE for a 503).",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}},
		[]string{"endpoint", "code"})
	f(latency)
	m.latency = make(map[string]map[Code]prometheus.Observer)
	for _, ep := range []string{endpointVerify, endpointAuth} {
		m.latency[ep] = make(map[Code]prometheus.Observer)
		for _, c := range append(verdict.Codes(), codeUnavailable) {
			m.latency[ep][c] = latency.WithLabelValues(ep, string(c))
		}
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
		Help: "Always 1; labels say which build is running."}, []string{"version", "goversion"})
	f(buildInfo)
	buildInfo.WithLabelValues(Version, runtime.Version()).Set(1)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// gauges registers the series read from live state.
func (m *metrics) gauges(v *Verifier) {
	g := func(name, help string, fn func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, fn))
	}
	g("cache_entries", "Key records cached.", func() float64 { return float64(v.cache.Len()) })
	g("cache_capacity", "Most key records cached (-cache-size).", func() float64 { return float64(v.cfg.CacheSize) })
	g("data_keys_cached", "Unwrapped data keys cached.", func() float64 { return float64(v.keys.Len()) })
	g("feed_cursor", "Seq of the last change applied.", func() float64 { return float64(v.follower.Cursor()) })
	g("feed_last_contact_age_seconds", "Seconds since the last successful feed poll (-1 before the first).", func() float64 {
		age := v.sinceContact()
		if age < 0 {
			return -1
		}
		return age.Seconds()
	})
	g("serving_stale", "1 while the feed fails and cached verdicts are served within stale-if-error.", func() float64 {
		return b2f(v.follower.failing.Load() && v.state() == stateStale)
	})
	g("unavailable", "1 while every answer is 503 (stale-if-error ran out or the feed was never reached).", func() float64 {
		return b2f(v.state() == stateUnavailable)
	})
}

// observe records the latency of one answer; err means it was a 503.
func (m *metrics) observe(endpoint string, code Code, err error, d time.Duration) {
	if err != nil {
		code = codeUnavailable
	}
	if o, ok := m.latency[endpoint][code]; ok {
		o.Observe(d.Seconds())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
