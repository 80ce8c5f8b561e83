package plugin

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The plugin exits when its parent changes (Vault killed without stopping it),
// and not before: a parent that stays, whatever its pid, keeps it serving.
func TestExitWhenOrphaned(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(4242)
	exited := make(chan struct{})
	var checks atomic.Int32
	go exitWhenOrphaned(func() int {
		checks.Add(1)
		return int(ppid.Load())
	}, func() { close(exited) }, time.Millisecond)
	for checks.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-exited:
		t.Fatal("exited while its parent lives")
	default:
	}
	ppid.Store(1) // reparented to init
	<-exited      // bounded by the test's timeout
	assert.GreaterOrEqual(t, checks.Load(), int32(6))
}
