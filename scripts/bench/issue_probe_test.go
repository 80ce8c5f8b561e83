package main

import (
	"os"
	"testing"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

func TestIssueProbe(t *testing.T) {
	if os.Getenv("ISSUE_PROBE") == "" {
		t.Skip("probe")
	}
	v := vaulttest.Start(t)
	h := map[string][]string{"X-Vault-Token": {v.RootToken}}
	_, _ = vaultDo(v.Addr, "POST", "apikeys/config", h, map[string]interface{}{"max_keys": 0})
	_, _ = vaultDo(v.Addr, "POST", "apikeys/roles/bench", h, map[string]interface{}{"permissions": "*"})
	os.WriteFile("/tmp/probe-addr", []byte(v.Addr), 0o644)
	_, rate, err := issue(v.Addr, v.RootToken, "a", 3000, 16)
	t.Logf("rate %.0f err %v", rate, err)
	_, rate, err = issue(v.Addr, v.RootToken, "b", 3000, 16)
	t.Logf("rate %.0f err %v", rate, err)
}
