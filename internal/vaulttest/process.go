package vaulttest

import (
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// StopProcess ends cmd gracefully: SIGTERM, then SIGKILL after 10 s. done must
// close when the process has exited. Calling it again is harmless.
func StopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Load runs background work for tests that need requests in flight.
type Load struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

// StartLoad runs fn(worker, i) in workers goroutines, with i counting each
// worker's calls, until Stop.
func StartLoad(workers int, fn func(worker, i int)) *Load {
	l := &Load{stop: make(chan struct{})}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func(w int) {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				fn(w, i)
			}
		}(w)
	}
	return l
}

// Stop ends the workers and waits for them.
func (l *Load) Stop() {
	close(l.stop)
	l.wg.Wait()
}
