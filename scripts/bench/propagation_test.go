package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
	got, err := firstRefusals(log, map[string]time.Time{"a": t0, "b": t0.Add(30 * time.Millisecond)})
	require.NoError(t, err)
	require.ElementsMatch(t, []time.Duration{6 * time.Millisecond, 0}, got)
}
