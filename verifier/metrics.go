package verifier

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the verifier's Prometheus series, in a registry of its own so
// several verifiers can live in one process. No label ever holds a token.
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
	for _, c := range Codes {
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
		Help:    "Time from a change in Vault to its eviction here (includes clock skew).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}})
	f(m.feedLag)
	m.usageDropped = counter("usage_dropped_total", "Key uses not counted because the usage buffer was full.")
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
	g("data_keys_cached", "Unwrapped data keys cached.", func() float64 { return float64(v.keys.Len()) })
	g("feed_cursor", "Seq of the last change applied.", func() float64 { return float64(v.feed.Cursor()) })
	g("feed_last_contact_age_seconds", "Seconds since the last successful feed poll (-1 before the first).", func() float64 {
		age := v.sinceContact()
		if age < 0 {
			return -1
		}
		return age.Seconds()
	})
	g("serving_stale", "1 while the feed fails and cached verdicts are served within stale-if-error.", func() float64 {
		return b2f(v.feed.failing.Load() && v.state() == stateStale)
	})
	g("unavailable", "1 while every answer is 503 (stale-if-error ran out or the feed was never reached).", func() float64 {
		return b2f(v.state() == stateUnavailable)
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
