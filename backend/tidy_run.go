package backend

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Tidy runs in the background (DESIGN §4: nothing long holds a request open).
// `write tidy` starts a run and returns at once; `read tidy` shows whether one
// is running and what the last one did. One run at a time, whether started by
// a request or by the periodic job: a second start while one runs is answered
// with the running one.

// tidyRuns is this node's record of tidy runs; it lives in memory only (a
// restart or plugin reload forgets the last run, the next one tells again).
type tidyRuns struct {
	mu      sync.Mutex
	next    uint64   // number of the next run
	current *tidyRun // the run in progress, nil when none
	last    *tidyRun // the last finished run, nil before the first
	closed  bool     // the backend was torn down: start nothing more
	wg      sync.WaitGroup
}

// tidyRun is one run: the number it was given, what started it, when it started
// and ended, what it did and the error that stopped it, if any.
type tidyRun struct {
	Run        uint64
	Trigger    string // "request" or "periodic"
	StartedAt  time.Time
	FinishedAt time.Time
	Result     TidyResult
	Err        string
}

// data renders a run for a response. Times are RFC 3339 strings so a caller
// can compare them as printed.
func (r *tidyRun) data(finished bool) map[string]interface{} {
	d := map[string]interface{}{
		"run":        r.Run,
		"trigger":    r.Trigger,
		"started_at": r.StartedAt.Format(time.RFC3339Nano),
	}
	if finished {
		for k, v := range structToMap(r.Result) {
			d[k] = v
		}
		d["finished_at"] = r.FinishedAt.Format(time.RFC3339Nano)
		if r.Err != "" {
			d["error"] = r.Err
		}
	}
	return d
}

// claimTidy registers a new run, or returns the running one and false.
func (b *Backend) claimTidy(trigger string) (*tidyRun, bool) {
	t := &b.tidyRuns
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != nil {
		return t.current, false
	}
	if t.closed {
		return nil, false
	}
	t.next++
	t.current = &tidyRun{Run: t.next, Trigger: trigger, StartedAt: b.now()}
	return t.current, true
}

// finishTidy runs a claimed run to its end and records it as the last one.
func (b *Backend) finishTidy(ctx context.Context, s logical.Storage, run *tidyRun) error {
	res, err := b.tidy(ctx, s, run.Trigger != "periodic")
	done := *run
	done.Result, done.FinishedAt = res, b.now()
	if err != nil {
		done.Err = err.Error()
		b.logger.Warn("tidy run failed", "run", done.Run, "trigger", done.Trigger, "error", err)
	} else if res != (TidyResult{}) {
		b.logger.Info("tidy run done", append([]interface{}{"run", done.Run, "trigger", done.Trigger}, kvOf(structToMap(res))...)...)
	}
	t := &b.tidyRuns
	t.mu.Lock()
	t.current, t.last = nil, &done
	t.mu.Unlock()
	return err
}

// startTidy starts a run in the background under the backend's own context
// (cancelled at teardown), not the request's, which ends when the request is
// answered. It returns the run started, or the one already running and false.
func (b *Backend) startTidy(s logical.Storage) (*tidyRun, bool) {
	run, ok := b.claimTidy("request")
	if !ok {
		return run, false
	}
	t := &b.tidyRuns
	t.mu.Lock()
	if t.closed { // torn down between the claim and here
		t.current = nil
		t.mu.Unlock()
		return nil, false
	}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		_ = b.finishTidy(b.bgCtx, s, run) // finishTidy logs and records the error
	}()
	return run, true
}

// stopTidy cancels a background run and waits for it (backend teardown).
func (b *Backend) stopTidy() {
	t := &b.tidyRuns
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	b.bgCancel()
	t.wg.Wait()
}

// tidyStatus is what `read tidy` answers: whether a run is in progress (and
// since when), and the last finished run's fields.
func (b *Backend) tidyStatus() map[string]interface{} {
	t := &b.tidyRuns
	t.mu.Lock()
	defer t.mu.Unlock()
	d := map[string]interface{}{"running": t.current != nil}
	if t.last != nil {
		d = t.last.data(true)
		d["running"] = t.current != nil
	}
	if t.current != nil {
		d["running_run"] = t.current.Run
		d["running_since"] = t.current.StartedAt.Format(time.RFC3339Nano)
	}
	return d
}

// kvOf flattens a map into hclog's key/value pairs.
func kvOf(m map[string]interface{}) []interface{} {
	out := make([]interface{}, 0, 2*len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k, m[k])
	}
	return out
}
