package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// firstRefusals takes each revoked key's earliest REVOKED line, ignores other
// codes and other keys, and never reports a negative delay.
func TestFirstRefusals(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	log := filepath.Join(t.TempDir(), "audit.log")
	lines := `{"time":"2026-11-26T04:00:00.009Z","key_id":"a","code":"REVOKED"}
{"time":"2026-11-26T04:00:00.004Z","key_id":"a","code":"VALID"}
{"time":"2026-11-26T04:00:00.006Z","key_id":"a","code":"REVOKED"}
{"time":"2026-11-26T04:00:00.001Z","key_id":"other","code":"REVOKED"}
not json
{"time":"2026-11-26T04:00:00.020Z","key_id":"b","code":"REVOKED"}
`
	require.NoError(t, os.WriteFile(log, []byte(lines), 0o600))
	refusals := newFirstRefusals(map[string]time.Time{"a": t0, "b": t0.Add(30 * time.Millisecond)})
	require.NoError(t, scanAudit(log, refusals.add))
	got := refusals.delays()
	require.ElementsMatch(t, []time.Duration{6 * time.Millisecond, 0}, got)
}

// firstApplied takes, for each revocation, the earliest end (time plus
// latency) of a decision on any key made at its feed position or past it; a
// decision behind that position does not count, however early, one that ended
// before the delete returned counts as no delay, and a revocation no decision
// reached is counted unseen.
func TestFirstApplied(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	log := filepath.Join(t.TempDir(), "audit.log")
	lines := `{"time":"2026-11-26T04:00:00.000Z","key_id":"x","code":"VALID","latency_ms":0.5,"feed_seq":9}
{"time":"2026-11-26T04:00:00.004Z","key_id":"y","code":"VALID","latency_ms":1,"feed_seq":10}
{"time":"2026-11-26T04:00:00.009Z","key_id":"z","code":"VALID","latency_ms":0.25,"feed_seq":12}
{"time":"2026-11-26T04:00:00.007Z","key_id":"a","code":"REVOKED","latency_ms":3,"feed_seq":11}
not json
{"time":"2026-11-26T04:00:00.001Z","key_id":"w","code":"VALID","latency_ms":0.1,"feed_seq":13}
`
	require.NoError(t, os.WriteFile(log, []byte(lines), 0o600))
	applied := newFirstApplied(map[uint64]time.Time{
		10: t0,                           // seq 10: earliest end at 10 or past is w's (1.1 ms), not y's (5 ms)
		12: t0.Add(-time.Millisecond),    // seq 12: z ends at 9.25 ms, w at 1.1 ms → 2.1 ms
		13: t0.Add(5 * time.Millisecond), // seq 13: w ended before the delete returned → 0
		14: t0,                           // nothing at 14 or past
	})
	require.NoError(t, scanAudit(log, applied.add))
	got, unseen := applied.delays()
	assert.Equal(t, 1, unseen)
	assert.ElementsMatch(t, []time.Duration{1100 * time.Microsecond, 2100 * time.Microsecond, 0}, got)
}

// The paced load's connections move towards 1.04× the target from either
// side, and a run within 1.0–1.1× is taken as it is.
func TestCalibrated(t *testing.T) {
	for _, c := range []struct {
		name      string
		conns     int
		rps, rate float64
		want      int
		ok        bool
	}{
		{"within the band", 400, 16000, 15000, 400, true},
		{"at the target: taken", 400, 15000, 15000, 400, true},
		{"just below the target: scaled up", 400, 14800, 15000, 422, false},
		{"below: scaled up", 300, 10000, 15000, 468, false},
		{"far below: at most doubled", 300, 1000, 15000, 600, false},
		{"over the band: scaled down", 640, 20000, 15000, 499, false},
		{"far over: never below one", 1, 1e6, 15000, 1, false},
	} {
		got, ok := calibrated(c.conns, c.rps, c.rate)
		assert.Equal(t, c.ok, ok, c.name)
		assert.Equal(t, c.want, got, c.name)
	}
}

// The feed-lag histogram is read out of the verifier's metrics text, and a
// run's share is the difference of two reads.
func TestParseFeedLag(t *testing.T) {
	text := func(b10, b25, count string) string {
		return `# HELP apikeys_verifier_feed_lag_seconds Time from a change in Vault to its eviction here.
# TYPE apikeys_verifier_feed_lag_seconds histogram
apikeys_verifier_feed_lag_seconds_bucket{le="0.01"} ` + b10 + `
apikeys_verifier_feed_lag_seconds_bucket{le="0.025"} ` + b25 + `
apikeys_verifier_feed_lag_seconds_bucket{le="+Inf"} ` + count + `
apikeys_verifier_feed_lag_seconds_sum 1.5
apikeys_verifier_feed_lag_seconds_count ` + count + `
apikeys_verifier_feed_changes_total 99
`
	}
	before, err := feedLagOf(parseSamples(text("3", "4", "5")))
	require.NoError(t, err)
	after, err := feedLagOf(parseSamples(text("500", "590", "605")))
	require.NoError(t, err)
	got := after.since(before)
	assert.Equal(t, 600.0, got.total)
	assert.Equal(t, 497.0, got.within["0.01"])
	assert.Equal(t, 586.0, got.within["0.025"])
	_, err = feedLagOf(parseSamples("apikeys_verifier_feed_changes_total 99\n"))
	assert.Error(t, err, "a verifier without the histogram")
	// Labels are part of a sample's name; comments and junk are not samples.
	assert.Equal(t, map[string]float64{`a{op="usage"}`: 3, "b": 1.5},
		parseSamples("# HELP a x\n"+`a{op="usage"} 3`+"\nb 1.5\nc notanumber\n\n"))
}
