package layout

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/vault-apikeys/vault-apikeys"

// neutral are the packages every program may import; they import nothing of ours.
var neutral = []string{"token", "envelope", "wire", "verdict", "vaultaddr"}

// deps lists the packages of this module that pkgs depend on (themselves included),
// as `go list -deps` sees them.
func deps(t *testing.T, pkgs ...string) []string {
	t.Helper()
	args := append([]string{"list", "-deps", "-e", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)
	out, err := exec.Command("go", args...).CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	var ours []string
	for _, p := range strings.Fields(string(out)) {
		if p == module || strings.HasPrefix(p, module+"/") {
			ours = append(ours, strings.TrimPrefix(strings.TrimPrefix(p, module), "/"))
		}
	}
	return ours
}

// exists tells whether the module has a package at rel (the console may not yet).
func exists(t *testing.T, rel string) bool {
	t.Helper()
	return exec.Command("go", "list", module+"/"+rel).Run() == nil
}

func TestVerifierSideImportsNothingOfTheEngine(t *testing.T) {
	for _, root := range []string{"verifier/...", "cmd/apikeys-verifier", "examples/...", "console/...", "cmd/apikeys-console"} {
		if !exists(t, strings.TrimSuffix(root, "/...")) {
			continue
		}
		for _, p := range deps(t, module+"/"+root) {
			if p == "backend" || strings.HasPrefix(p, "backend/") || p == "plugin" {
				t.Errorf("%s imports %s: the verifier side talks to Vault over HTTP only (DESIGN §2)", root, p)
			}
		}
	}
}

func TestEngineImportsNothingOfTheVerifierSide(t *testing.T) {
	for _, p := range deps(t, module+"/backend/...", module+"/plugin/...", module+"/cmd/vault-plugin-secrets-apikeys") {
		for _, other := range []string{"verifier", "console"} {
			if p == other || strings.HasPrefix(p, other+"/") {
				t.Errorf("the engine imports %s (DESIGN §2)", p)
			}
		}
	}
}

func TestNeutralPackagesImportNothingElseOfOurs(t *testing.T) {
	allowed := map[string]bool{}
	for _, n := range neutral {
		allowed[n] = true
	}
	for _, n := range neutral {
		if !exists(t, n) {
			continue
		}
		for _, p := range deps(t, module+"/"+n) {
			if !allowed[p] {
				t.Errorf("neutral package %s imports %s", n, p)
			}
		}
	}
}

func TestMiddlewareIsStandardLibraryOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+"/verifier/middleware").CombinedOutput()
	require.NoError(t, err, "go list: %s", out)
	for _, p := range strings.Fields(string(out)) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p, module), "/")
		if p == module+"/verifier/middleware" || (strings.HasPrefix(p, module) && (rel == "verdict" || rel == "token")) {
			continue
		}
		t.Errorf("the HTTP middleware links %s: apps that call the verifier over HTTP must not link more than the standard library and our neutral contract", p)
	}
}
