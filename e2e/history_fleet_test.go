package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/e2e/history"
)

// historyRecorder collects the history of a run; every method is safe for concurrent use.
type historyRecorder struct {
	mu sync.Mutex
	h  history.History
	// keys known to be issued: key_id -> secret and role, for the verify load.
	secrets map[string]keyRef
	ids     []string
	reqs    atomic.Uint64
}

type keyRef struct {
	key  string // never logged
	role string
}

func (r *historyRecorder) mutation(m history.Mutation) {
	r.mu.Lock()
	r.h.Mutations = append(r.h.Mutations, m)
	r.mu.Unlock()
}

func (r *historyRecorder) fault(format string, args ...any) {
	r.mu.Lock()
	r.h.Faults = append(r.h.Faults, history.Fault{At: time.Now(), What: fmt.Sprintf(format, args...)})
	r.mu.Unlock()
}

func (r *historyRecorder) known(keyID, key, role string) {
	r.mu.Lock()
	if _, ok := r.secrets[keyID]; !ok {
		r.secrets[keyID] = keyRef{key, role}
		r.ids = append(r.ids, keyID)
	}
	r.mu.Unlock()
}

func (r *historyRecorder) pick(i uint64) (string, keyRef, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ids) == 0 {
		return "", keyRef{}, false
	}
	id := r.ids[i%uint64(len(r.ids))]
	return id, r.secrets[id], true
}

// fleetVerifier is one verifier slot; a restart starts a new incarnation on
// a new port with the same token and audit file.
type fleetVerifier struct {
	name      string
	dir       string
	addrs     string
	tokenFile string
	extra     []string

	displayName string // of its Vault token, as Vault's audit log names it

	mu          sync.Mutex
	proc        *verifierProc
	incarnation int
	started     []time.Time // when each incarnation was launched
	stopped     bool        // SIGSTOPped
	pauses      []history.Pause
	scrapeEvery atomic.Int64
}

func newFleetVerifier(t *testing.T, addrs, token, displayName, name string, extra ...string) *fleetVerifier {
	t.Helper()
	f := &fleetVerifier{name: name, dir: t.TempDir(), addrs: addrs, extra: extra, displayName: displayName, started: []time.Time{time.Now()}}
	f.tokenFile = filepath.Join(f.dir, "token")
	require.NoError(t, os.WriteFile(f.tokenFile, []byte(token), 0o600))
	f.proc = launchVerifier(t, f.dir, f.addrs, f.tokenFile, f.extra...)
	f.scrapeEvery.Store(int64(scrapeEvery))
	t.Cleanup(func() { f.signal(syscall.SIGCONT) })
	return f
}

// current is the running incarnation's name and URL.
func (f *fleetVerifier) current() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%s.%d", f.name, f.incarnation), f.proc.URL
}

func (f *fleetVerifier) signal(sig syscall.Signal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.proc.cmd.Process != nil {
		_ = f.proc.cmd.Process.Signal(sig)
	}
	now := time.Now()
	switch {
	case sig == syscall.SIGSTOP && !f.stopped:
		f.pauses = append(f.pauses, history.Pause{Verifier: fmt.Sprintf("%s.%d", f.name, f.incarnation), From: now})
	case sig == syscall.SIGCONT && f.stopped:
		f.pauses[len(f.pauses)-1].To = now
	}
	f.stopped = sig == syscall.SIGSTOP
}

func (f *fleetVerifier) restart(t *testing.T) {
	f.mu.Lock()
	old := f.proc
	f.mu.Unlock()
	f.signal(syscall.SIGCONT)
	old.stop()
	launched := time.Now()
	p := launchVerifier(t, f.dir, f.addrs, f.tokenFile, f.extra...)
	f.mu.Lock()
	f.proc, f.incarnation, f.stopped = p, f.incarnation+1, false
	f.started = append(f.started, launched)
	f.mu.Unlock()
}

// incarnationAt names the incarnation running at t (they never overlap).
func (f *fleetVerifier) incarnationAt(t time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := len(f.started) - 1
	for i > 0 && f.started[i].After(t) {
		i--
	}
	return fmt.Sprintf("%s.%d", f.name, i)
}

// scrape records the verifier's last feed contact until ctx ends.
func (f *fleetVerifier) scrape(ctx context.Context, rec *historyRecorder) {
	cl := &http.Client{Timeout: time.Second}
	for ctx.Err() == nil {
		name, url := f.current()
		sent := time.Now()
		resp, err := cl.Get(url + "/metrics")
		if err == nil {
			p, ok := parseMetrics(resp)
			resp.Body.Close()
			if ok {
				p.Verifier, p.Sent, p.Received = name, sent, time.Now()
				rec.mu.Lock()
				rec.h.Polls = append(rec.h.Polls, p)
				rec.mu.Unlock()
			}
		}
		sleepCtx(ctx, time.Duration(f.scrapeEvery.Load()))
	}
}

func parseMetrics(resp *http.Response) (history.Poll, bool) {
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || name != "apikeys_verifier_feed_last_contact_age_seconds" {
			continue
		}
		age, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return history.Poll{}, false
		}
		return history.Poll{Contact: age >= 0, ContactAge: time.Duration(age * float64(time.Second))}, true
	}
	return history.Poll{}, false
}

// scrapeEvery is how often a verifier's /metrics is read (faster while a
// paused verifier drains its backlog).
const scrapeEvery = 25 * time.Millisecond

var verifyClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// verify asks the current incarnation about keyID and records the answer.
func (f *fleetVerifier) verify(ctx context.Context, rec *historyRecorder, keyID string, ref keyRef, perm string) history.Verify {
	name, url := f.current()
	body := map[string]any{"key": ref.key}
	if perm != "" {
		body["permissions"] = []string{perm}
	}
	raw, _ := json.Marshal(body)
	v := history.Verify{Verifier: name, RequestID: fmt.Sprintf("h%d", rec.reqs.Add(1)), KeyID: keyID, Role: ref.role, Permission: perm}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/verify", bytes.NewReader(raw))
	req.Header.Set("X-Request-Id", v.RequestID)
	v.Sent = time.Now()
	resp, err := verifyClient.Do(req)
	v.Received = time.Now()
	switch {
	case err != nil:
		v.Code = "error"
	case resp.StatusCode != http.StatusOK:
		v.Code = fmt.Sprintf("HTTP %d", resp.StatusCode)
		resp.Body.Close()
	default:
		var out struct {
			Code string `json:"code"`
		}
		if json.NewDecoder(resp.Body).Decode(&out) != nil {
			out.Code = "error"
		}
		resp.Body.Close()
		v.Code = out.Code
	}
	return v
}

// auditLines reads every incarnation's audit lines (one file per slot).
func (f *fleetVerifier) auditLines(into map[string]map[string]history.AuditLine) error {
	lines, err := history.ReadAudit(filepath.Join(f.dir, "audit.log"))
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i <= f.incarnation; i++ {
		into[fmt.Sprintf("%s.%d", f.name, i)] = lines
	}
	return nil
}

// feedFollower records Vault's feed as published, for the checker's ground truth.
type feedFollower struct {
	api      *apiClient
	rec      *historyRecorder
	cursor   uint64
	complete bool
}

func (fl *feedFollower) follow(ctx context.Context) {
	for ctx.Err() == nil {
		fl.poll(ctx, time.Second)
	}
}

// poll reads one page; a reset (retention overrun, a purge overtaking it)
// makes the record incomplete.
func (fl *feedFollower) poll(ctx context.Context, wait time.Duration) int {
	ch, err := fl.api.Changes(ctx, fl.cursor, wait)
	if err != nil {
		sleepCtx(ctx, 50*time.Millisecond)
		return 0
	}
	fl.rec.mu.Lock()
	defer fl.rec.mu.Unlock()
	if ch.Reset {
		fl.complete = false
		fl.cursor = ch.Head
		return 0
	}
	for _, c := range ch.Changes {
		if c.Seq != fl.cursor+1 {
			fl.complete = false // entries purged before we read them
		}
		fl.rec.h.Feed = append(fl.rec.h.Feed, history.FeedEntry{Seq: c.Seq, KeyID: c.KeyID, Role: c.Role, Op: c.Op})
		fl.cursor = c.Seq
	}
	return len(ch.Changes)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
