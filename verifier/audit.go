package verifier

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// auditLine is one decision. It has no field that could hold a token: the key
// is named by its public key_id only.
type auditLine struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	Endpoint  string    `json:"endpoint"`
	KeyID     string    `json:"key_id,omitempty"`
	Name      string    `json:"name,omitempty"`
	Code      string    `json:"code"`
	Workspace string    `json:"workspace,omitempty"`
	ClientIP  string    `json:"client_ip,omitempty"`
	LatencyMS float64   `json:"latency_ms"`
}

// audit writes one JSON line per decision to stdout or a file. Each line is a
// single write, so lines never interleave; a file is reopened by Reopen (after
// logrotate moved it, on SIGHUP).
type audit struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
}

// openAudit opens path: "" disables the audit (nil, nil), "-" is stdout.
func openAudit(path string) (*audit, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return &audit{path: path, w: os.Stdout}, nil
	}
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	return &audit{path: path, w: f, f: f}, nil
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return f, nil
}

// Log writes l. A failed write is returned for the caller to log; the
// decision itself stands.
func (a *audit) Log(l *auditLine) error {
	if a == nil {
		return nil
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(b)
	return err
}

// Reopen reopens the file at the same path; stdout needs nothing.
func (a *audit) Reopen() error {
	if a == nil || a.f == nil {
		return nil
	}
	f, err := openAuditFile(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f, a.w = f, f
	a.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (a *audit) Close() error {
	if a == nil || a.f == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
