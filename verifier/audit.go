package verifier

import (
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
	// Tenant is the tenant the decision was for (auditTenant).
	Tenant    string  `json:"tenant,omitempty"`
	Name      string  `json:"name,omitempty"`
	Code      string  `json:"code"`
	Workspace string  `json:"workspace,omitempty"`
	ClientIP  string  `json:"client_ip,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	// FeedSeq is the feed position the verifier had applied when it answered
	// (DESIGN §6): a history checker orders answers against revocations by it.
	FeedSeq uint64 `json:"feed_seq"`
}

// auditFlushEvery bounds how long a line waits in memory before it is written.
// A write(2) per decision would serialise every request on one syscall; lines
// are appended whole to a buffer instead, so they never interleave.
const auditFlushEvery = 100 * time.Millisecond

// auditBufferMax flushes early when this much is waiting.
const auditBufferMax = 64 << 10

// audit writes one JSON line per decision to stdout or a file, buffered for at
// most auditFlushEvery. A file is reopened by Reopen (after logrotate moved
// it, on SIGHUP); Close flushes what is left.
type audit struct {
	mu   sync.Mutex
	path string
	w    io.Writer
	f    *os.File
	buf  []byte
	err  error // the last failed write, reported by the next Log

	stop chan struct{}
	done chan struct{}
}

// openAudit opens path: "" disables the audit (nil, nil), "-" is stdout.
func openAudit(path string) (*audit, error) {
	switch path {
	case "":
		return nil, nil
	case "-":
		return newAudit(path, os.Stdout, nil), nil
	}
	f, err := openAuditFile(path)
	if err != nil {
		return nil, err
	}
	return newAudit(path, f, f), nil
}

func newAudit(path string, w io.Writer, f *os.File) *audit {
	a := &audit{path: path, w: w, f: f, stop: make(chan struct{}), done: make(chan struct{})}
	go a.flusher()
	return a
}

func (a *audit) flusher() {
	defer close(a.done)
	tick := time.NewTicker(auditFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-tick.C:
			a.mu.Lock()
			a.flushLocked()
			a.mu.Unlock()
		}
	}
}

func (a *audit) flushLocked() {
	if len(a.buf) == 0 {
		return
	}
	if _, err := a.w.Write(a.buf); err != nil {
		a.err = err
	}
	a.buf = a.buf[:0]
}

// Flush writes what is buffered now.
func (a *audit) Flush() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
	err := a.err
	a.err = nil
	return err
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return f, nil
}

// Log queues l. A failed earlier write is returned for the caller to log; the
// decision itself stands.
func (a *audit) Log(l *auditLine) error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf = appendAuditLine(a.buf, l)
	if len(a.buf) >= auditBufferMax {
		a.flushLocked()
	}
	err := a.err
	a.err = nil
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
	a.flushLocked() // what was logged before the move belongs to the old file
	old := a.f
	a.f, a.w = f, f
	a.mu.Unlock()
	return old.Close()
}

// Close flushes and closes the file.
func (a *audit) Close() error {
	if a == nil {
		return nil
	}
	select {
	case <-a.stop:
		return nil
	default:
		close(a.stop)
	}
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	a.flushLocked()
	if a.f == nil {
		return a.err
	}
	return a.f.Close()
}
