package vaulttest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

var (
	verifierOnce sync.Once
	verifierBin  string
	verifierErr  error
)

// BuildVerifier builds cmd/apikeys-verifier once per process and returns the
// binary's path.
func BuildVerifier(t T) string {
	t.Helper()
	verifierOnce.Do(func() {
		var dir string
		if dir, verifierErr = buildCommand("apikeys-verifier"); verifierErr == nil {
			verifierBin = filepath.Join(dir, "apikeys-verifier")
		}
	})
	if verifierErr != nil {
		t.Fatal(verifierErr)
	}
	return verifierBin
}

// Verifier is a running apikeys-verifier binary: the program as operators run
// it, for end-to-end tests and the load benchmarks.
type Verifier struct {
	URL   string // http://127.0.0.1:port
	Log   string // its stdout and stderr
	Audit string // its audit log
	Cmd   *exec.Cmd

	done    chan struct{}
	logFile *os.File
}

// StartVerifier runs the verifier on a free loopback port against addrs (one
// Vault address or a comma-separated list) with the token in tokenFile, its
// logs in dir, plus extra flags. VAULT_ADDR and VAULT_TOKEN of the caller's
// environment are cleared, so only what is passed counts. It returns once
// /readyz answers 200; the cleanup stops it gracefully.
func StartVerifier(t T, dir, addrs, tokenFile string, extra ...string) *Verifier {
	t.Helper()
	var p *Verifier
	startOnFreePort(t, func() (err error) {
		p, err = launchVerifier(t, dir, addrs, tokenFile, extra)
		return err
	})
	t.Cleanup(p.Stop)
	return p
}

// launchVerifier starts a verifier on a fresh free port and waits for /readyz.
// It returns errPortTaken (wrapped) when another process took the port first.
func launchVerifier(t T, dir, addrs, tokenFile string, extra []string) (*Verifier, error) {
	port := pickPort(t)
	p := &Verifier{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Log: filepath.Join(dir, "verifier.log"),
		Audit: filepath.Join(dir, "audit.log"), done: make(chan struct{})}
	args := append([]string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-vault-addr", addrs,
		"-vault-token-file", tokenFile, "-audit-log", p.Audit}, extra...)
	p.Cmd = exec.Command(BuildVerifier(t), args...)
	var err error
	if p.logFile, err = os.Create(p.Log); err != nil {
		return nil, err
	}
	p.Cmd.Stdout, p.Cmd.Stderr = p.logFile, p.logFile
	p.Cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=")
	if err := p.Cmd.Start(); err != nil {
		p.logFile.Close()
		return nil, fmt.Errorf("start verifier: %w", err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.logFile.Close()
			out, _ := os.ReadFile(p.Log)
			if portTaken(string(out)) {
				return nil, fmt.Errorf("verifier on %s: %w", p.URL, errPortTaken)
			}
			return nil, fmt.Errorf("verifier exited during start-up:\n%s", out)
		default:
		}
		// Until ours logs that it is serving, an answer on the port may be
		// another process's.
		if out, _ := os.ReadFile(p.Log); bytes.Contains(out, []byte("serving")) {
			if resp, err := http.Get(p.URL + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return p, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop()
	out, _ := os.ReadFile(p.Log)
	return nil, fmt.Errorf("verifier did not become ready:\n%s", out)
}

// Stop ends the verifier gracefully (SIGTERM, then SIGKILL after 10 s).
// Calling it again is harmless.
func (p *Verifier) Stop() {
	StopProcess(p.Cmd, p.done)
	p.logFile.Close()
}

// Done is closed when the process has exited.
func (p *Verifier) Done() <-chan struct{} { return p.done }
