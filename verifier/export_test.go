package verifier

import (
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// TestVault lends the package's fake Vault to the external tests of adapters
// built on the public API (verifier/inprocess, see inprocess_test.go), which
// cannot reach test files of this package otherwise.
type TestVault struct{ f *fakeVault }

// NewTestVault starts a fake Vault with the role "ops" (clusters:read and
// nodes:*, workspaces prod and dev-*, addresses 127.0.0.0/8 and 10.0.0.0/8).
func NewTestVault(t testing.TB) *TestVault {
	f := newFakeVault(t)
	opsRole(f)
	return &TestVault{f: f}
}

// Config is a verifier configuration pointing at the fake.
func (x *TestVault) Config() Config {
	return Config{VaultAddrs: []string{x.f.srv.URL}, VaultToken: x.f.token, Logger: hclog.NewNullLogger()}
}

// Issue creates a key of role "ops" and returns its token and key_id.
func (x *TestVault) Issue(name, workspace string, metadata map[string]string) (string, string) {
	return x.f.issue(name, "ops", keyOpts{workspace: workspace, metadata: metadata})
}

// IssueIn creates a key of role "ops" in tenant and returns its token and key_id.
func (x *TestVault) IssueIn(tenant, name string) (string, string) {
	return x.f.issue(name, "ops", keyOpts{tenant: tenant})
}

// Revoke revokes a key and publishes the change on the feed.
func (x *TestVault) Revoke(keyID string) { x.f.setStatus(keyID, wire.StatusRevoked, wire.OpRevoked) }

// SetDown makes every Vault request fail (or succeed again).
func (x *TestVault) SetDown(down bool) { x.f.setDown(down) }
