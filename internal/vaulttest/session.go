package vaulttest

import (
	"fmt"
	"os"
	"sync"
)

// Session implements T for programs outside `go test` (benchmarks, tools):
// Fatal runs the cleanups and exits; Close runs them at the end.
type Session struct {
	mu       sync.Mutex
	cleanups []func()
}

// NewSession returns an empty session.
func NewSession() *Session { return &Session{} }

// Helper implements T.
func (s *Session) Helper() {}

// Fatal implements T.
func (s *Session) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"fatal:"}, args...)...)
	s.Close()
	os.Exit(1)
}

// Fatalf implements T.
func (s *Session) Fatalf(format string, args ...any) { s.Fatal(fmt.Sprintf(format, args...)) }

// Cleanup implements T.
func (s *Session) Cleanup(f func()) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}

// TempDir implements T: a fresh directory removed on Close.
func (s *Session) TempDir() string {
	dir, err := os.MkdirTemp("", "apikeys-session-")
	if err != nil {
		s.Fatal(err)
	}
	s.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Close runs the cleanups, newest first.
func (s *Session) Close() {
	s.mu.Lock()
	fns := s.cleanups
	s.cleanups = nil
	s.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}
