// Package vaulttest starts a real Vault dev server for integration tests, with
// transit, the KEK and the apikeys plugin mounted and configured through a
// least-privilege transit token. A missing Vault fails the test: it never skips.
package vaulttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// T is the part of testing.TB the harness needs, so that benchmarks run
// outside `go test` can start a Vault the same way tests do.
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Vault is one running dev server.
type Vault struct {
	Addr      string
	RootToken string
	Bin       string
	Client    *api.Client
	Dir       string
	LogPath   string

	cmd  *exec.Cmd
	done chan struct{}
}

// Option changes what Start sets up.
type Option func(*options)

type options struct {
	engine bool
	raft   bool
	// raftDir is where Raft's data goes ("" = the server's directory).
	raftDir string
	extra   string
	args    []string
}

// WithServerArgs adds flags to `vault server -dev` (e.g. -log-level=debug).
func WithServerArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithoutEngine starts Vault with the plugin in its catalog but nothing mounted.
func WithoutEngine() Option { return func(o *options) { o.engine = false } }

// WithRaft keeps the dev server's data in integrated storage (one Raft node,
// on disk) instead of in memory, as production does: Vault's heap then no
// longer holds every stored entry. The data goes under dir, or under the
// server's own directory when dir is "" (a bench may choose a RAM disk).
func WithRaft(dir string) Option {
	return func(o *options) { o.raft, o.raftDir = true, dir }
}

// WithConfig adds HCL to the server configuration (e.g. an audit-friendly setting).
func WithConfig(hcl string) Option { return func(o *options) { o.extra += "\n" + hcl } }

var (
	buildOnce sync.Once
	pluginDir string
	buildErr  error
)

// Root is the repository root (where go.mod is).
func Root() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "backend")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("vaulttest: cannot find the repository root")
		}
		dir = parent
	}
}

// FindVault returns a Vault binary: $VAULT_BIN, `vault` on PATH, or the one
// scripts/install-vault built into .cache/vault.
func FindVault() (string, error) {
	if bin := os.Getenv("VAULT_BIN"); bin != "" {
		return bin, nil
	}
	if bin, err := exec.LookPath("vault"); err == nil {
		return bin, nil
	}
	matches, _ := filepath.Glob(filepath.Join(Root(), ".cache", "vault", "vault-*"))
	for _, m := range matches {
		if !strings.Contains(m, ".tmp.") {
			return m, nil
		}
	}
	return "", fmt.Errorf("no vault binary: run `make test` (it builds one with scripts/install-vault) or set VAULT_BIN")
}

// PluginDir builds the plugin once per test binary and returns its directory.
func PluginDir(t T) string {
	buildOnce.Do(func() {
		pluginDir, buildErr = buildCommand("vault-plugin-secrets-apikeys")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pluginDir
}

// buildCommand builds ./cmd/<name> into a directory of this process, which it
// returns; the binary is <dir>/<name>. A test process has no hook to remove
// it when it ends, so each build first removes the directories of processes
// that have ended (sweepBuilds): without that, every test process left its
// binaries in the temporary directory.
func buildCommand(name string) (string, error) {
	parent := filepath.Join(os.TempDir(), "vault-apikeys-builds")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", err
	}
	sweepBuilds(parent)
	dir := filepath.Join(parent, fmt.Sprintf("%s-%d", name, os.Getpid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", name, err, out)
	}
	return dir, nil
}

// sweepBuilds removes the build directories (<name>-<pid>) in parent whose
// process has ended. A directory whose pid is alive, or cannot be read, stays.
func sweepBuilds(parent string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '-')
		if i < 0 {
			continue
		}
		pid, err := strconv.Atoi(e.Name()[i+1:])
		if err != nil || pid <= 0 || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(filepath.Join(parent, e.Name()))
	}
}

// processAlive reports whether pid names a running process (one this user
// may not signal counts as running).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a dev server on a free loopback port and stops it when the test ends.
// Under -short (make unit) it skips the test: integration tests need no other guard.
func Start(t T, opts ...Option) *Vault {
	t.Helper()
	if sk, ok := t.(interface{ Skip(args ...any) }); ok && testing.Testing() && testing.Short() {
		sk.Skip("integration test: starts a Vault dev server (skipped by -short)")
	}
	o := options{engine: true}
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := FindVault()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "extra.hcl")
	if err := os.WriteFile(cfg, []byte("raw_storage_endpoint = true\n"+o.extra+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := &Vault{Bin: bin, RootToken: "root", Dir: dir, LogPath: filepath.Join(dir, "vault.log")}
	startOnFreePort(t, func() error { return v.launch(t, o, cfg) })
	if o.engine {
		v.SetupEngine(t, "apikeys")
	}
	return v
}

// pickPort chooses a server's port (a test puts a taken one first).
var pickPort = FreePort

// startAttempts bounds the starts of a server whose free port was taken.
const startAttempts = 5

// errPortTaken: the port FreePort found was bound by another process before
// ours bound it (test packages run in parallel). The start is retried on
// another port.
var errPortTaken = errors.New("the chosen port was taken before the server bound it")

// startOnFreePort runs launch until a server is up, trying again (at most
// startAttempts in all) while the port it picked was taken first; any other
// failure ends the test.
func startOnFreePort(t T, launch func() error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := launch()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatal(err)
		}
	}
}

// portTaken reports whether a server's log says its listener's port was in use.
func portTaken(log string) bool { return strings.Contains(log, "address already in use") }

// launch starts the server on a fresh free port and waits until it is ready.
// It returns errPortTaken (wrapped) when another process took the port first.
func (v *Vault) launch(t T, o options, cfg string) error {
	port := pickPort(t)
	v.Addr = fmt.Sprintf("http://127.0.0.1:%d", port)
	v.done = make(chan struct{})
	logFile, err := os.Create(v.LogPath)
	if err != nil {
		return err
	}
	args := append([]string{"server", "-dev", "-dev-root-token-id=root",
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port), "-dev-plugin-dir=" + PluginDir(t), "-config=" + cfg}, o.args...)
	if o.raft {
		storage, err := v.raftConfig(t, o.raftDir, port)
		if err != nil {
			return err
		}
		args = append(args, "-config="+storage)
	}
	v.cmd = exec.Command(v.Bin, args...)
	v.cmd.Stdout, v.cmd.Stderr = logFile, logFile
	v.cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=")
	if err := v.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start vault: %w", err)
	}
	cmd, done := v.cmd, v.done
	go func() { _ = cmd.Wait(); logFile.Close(); close(done) }()
	conf := api.DefaultConfig()
	conf.Address = v.Addr
	if v.Client, err = api.NewClient(conf); err != nil {
		v.Stop()
		return err
	}
	v.Client.SetToken(v.RootToken)
	if err := v.waitReady(); err != nil {
		v.Stop()
		return err
	}
	t.Cleanup(v.Stop)
	return nil
}

// raftConfig writes the storage stanza of a one-node Raft dev server on port:
// a fresh data directory per start (under parent, or the server's directory),
// and the cluster address the dev server listens on (its port + 1).
func (v *Vault) raftConfig(t T, parent string, port int) (string, error) {
	if parent == "" {
		parent = v.Dir
	}
	data, err := os.MkdirTemp(parent, fmt.Sprintf("raft-%d-", port))
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { _ = os.RemoveAll(data) }) // runs after the server stops
	hcl := fmt.Sprintf("storage \"raft\" {\n  path = %q\n  node_id = \"node1\"\n}\ncluster_addr = \"http://127.0.0.1:%d\"\n", data, port+1)
	path := filepath.Join(v.Dir, "raft.hcl")
	return path, os.WriteFile(path, []byte(hcl), 0o600)
}

// waitReady waits for the dev server to be unsealed and to have printed its
// banner (unseal key, root token), so UnsealKey never races.
func (v *Vault) waitReady() error {
	// Short asks: whatever holds a taken port may never answer.
	probe, err := v.Client.Clone()
	if err != nil {
		return err
	}
	probe.SetClientTimeout(2 * time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		// Vault may log the failed bind and go on running: the log decides.
		if portTaken(v.Log()) {
			return fmt.Errorf("vault on %s: %w", v.Addr, errPortTaken)
		}
		select {
		case <-v.done:
			return fmt.Errorf("vault exited during start-up:\n%s", v.Log())
		default:
		}
		if h, err := probe.Sys().Health(); err == nil && h.Initialized && !h.Sealed && strings.Contains(v.Log(), "Root Token:") {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("vault did not become ready:\n%s", v.Log())
}

// SetupEngine enables transit with the KEK (once) and mounts the plugin at path,
// configured with a periodic token limited to policies/plugin-transit.hcl.
func (v *Vault) SetupEngine(t T, path string) {
	t.Helper()
	mounts, err := v.Client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mounts["transit/"]; !ok {
		v.Must(t, v.Client.Sys().Mount("transit", &api.MountInput{Type: "transit"}))
		_, err = v.Client.Logical().Write("transit/keys/apikeys", nil)
		v.Must(t, err)
	}
	v.Must(t, v.Client.Sys().Mount(path, &api.MountInput{Type: "vault-plugin-secrets-apikeys"}))
	_, err = v.Client.Logical().Write(path+"/config", map[string]interface{}{
		"vault_addr": v.Addr,
		"token":      v.TokenFromFile(t, "policies/plugin-transit.hcl"),
	})
	v.Must(t, err)
}

// Must fails the test on err.
func (v *Vault) Must(t T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Token writes policyHCL under a fresh name and returns a periodic token with
// only that policy.
func (v *Vault) Token(t T, policyHCL string) string {
	t.Helper()
	name := fmt.Sprintf("p-%d", time.Now().UnixNano())
	v.Must(t, v.Client.Sys().PutPolicy(name, policyHCL))
	sec, err := v.Client.Auth().Token().Create(&api.TokenCreateRequest{
		Policies: []string{name}, NoDefaultPolicy: true, Period: "1h", DisplayName: name,
	})
	v.Must(t, err)
	return sec.Auth.ClientToken
}

// TokenFromFile is Token with a policy file from the repository.
func (v *Vault) TokenFromFile(t T, rel string) string {
	t.Helper()
	hcl, err := os.ReadFile(filepath.Join(Root(), rel))
	v.Must(t, err)
	return v.Token(t, string(hcl))
}

// CLI runs the vault command against this server as root and returns its
// combined output and error.
func (v *Vault) CLI(t T, args ...string) (string, error) {
	t.Helper()
	return v.CLIWithToken(t, v.RootToken, "", args...)
}

// CLIWithToken runs the vault command with a token and optional stdin.
func (v *Vault) CLIWithToken(t T, tok, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.Bin, args...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+tok, "VAULT_FORMAT=")
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Log returns the server log so far.
func (v *Vault) Log() string {
	b, _ := os.ReadFile(v.LogPath)
	return string(b)
}

// RawStorage returns every decrypted storage entry under logical/ as
// "path\tvalue" lines, read through sys/raw.
func (v *Vault) RawStorage(t T) string {
	t.Helper()
	var out strings.Builder
	var walk func(prefix string)
	walk = func(prefix string) {
		sec, err := v.Client.Logical().List("sys/raw/" + prefix)
		v.Must(t, err)
		if sec == nil {
			return
		}
		keys, _ := sec.Data["keys"].([]interface{})
		for _, k := range keys {
			name := k.(string)
			if strings.HasSuffix(name, "/") {
				walk(prefix + name)
				continue
			}
			got, err := v.Client.Logical().Read("sys/raw/" + prefix + name)
			v.Must(t, err)
			if got != nil {
				fmt.Fprintf(&out, "%s%s\t%v\n", prefix, name, got.Data["value"])
			}
		}
	}
	walk("logical/")
	return out.String()
}

// Stop ends the server (idempotent).
func (v *Vault) Stop() { StopProcess(v.cmd, v.done) }

// Pid is the server's process id (its plugins are its child processes).
func (v *Vault) Pid() int { return v.cmd.Process.Pid }

// Get performs a raw HTTP GET with the root token (for checks below the api client).
func (v *Vault) Get(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, v.Addr+"/v1/"+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Vault-Token", v.RootToken)
	return http.DefaultClient.Do(req)
}

// UnsealKey returns the dev server's unseal key (printed in its log).
func (v *Vault) UnsealKey(t T) string {
	t.Helper()
	for _, line := range strings.Split(v.Log(), "\n") {
		if k, ok := strings.CutPrefix(strings.TrimSpace(line), "Unseal Key: "); ok {
			return strings.TrimSpace(k)
		}
	}
	t.Fatal("no unseal key in the dev server log")
	return ""
}

// Signal sends sig to the server process (SIGSTOP/SIGCONT simulate a hung Vault).
func (v *Vault) Signal(sig os.Signal) error { return v.cmd.Process.Signal(sig) }
