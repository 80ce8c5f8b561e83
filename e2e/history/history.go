package history

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"
)

// Op is a mutation the clients perform.
type Op string

// Mutations. Narrow and Widen are role writes that remove or give back
// NarrowPerm.
const (
	Issue   Op = "issue"
	Rotate  Op = "rotate" // grace 0: KeyID is revoked, NewKeyID created
	Disable Op = "disable"
	Enable  Op = "enable"
	Patch   Op = "patch" // description only: neither narrows nor widens
	Revoke  Op = "revoke"
	Narrow  Op = "narrow"
	Widen   Op = "widen"
)

// Outcome of a mutation as its client saw it.
type Outcome int

// Outcomes. Unknown is a request whose answer never arrived (the client
// disconnected, a timeout): it may or may not have taken effect.
const (
	OK Outcome = iota
	Failed
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"ok", "failed", "unknown"}[o]
}

// Mutation is one client request. Operations on one key_id (and on one role)
// come from one client, one at a time, so they are totally ordered by Invoke.
type Mutation struct {
	Client   int
	Op       Op
	Name     string
	KeyID    string // the key acted on (the old one for Rotate); empty for roles
	NewKeyID string // Issue and Rotate: the key created
	Role     string
	Invoke   time.Time
	Return   time.Time
	Outcome  Outcome
	Seq      uint64 // the `seq` of the answer; 0 when the answer has none
	Err      string // never holds a key: errors are the client's own text
}

// Verify is one decision asked of a verifier, joined with its audit line.
type Verify struct {
	Verifier   string // the verifier process (a restart is a new one)
	RequestID  string
	KeyID      string
	Role       string
	Permission string // required permission, "" for none
	Sent       time.Time
	Received   time.Time
	Code       string // VALID, REVOKED, …, or "HTTP 503", "error"
	// FeedSeq is the audit line's feed_seq: the feed position the verifier
	// had applied when it decided (JoinAudit sets it).
	FeedSeq uint64
}

// Poll is one read of a verifier's /metrics: how long ago its last
// successful feed poll was, read between Sent and Received.
type Poll struct {
	Verifier   string
	Sent       time.Time
	Received   time.Time
	Contact    bool          // false before the first successful poll
	ContactAge time.Duration // since the last successful poll
}

// PollBegin is a feed poll of a verifier as Vault saw it arrive (Vault's
// audit log): when the request began and whether Vault answered it.
type PollBegin struct {
	Verifier string
	At       time.Time
	OK       bool
}

// Pause is an interval during which a verifier was stopped (SIGSTOP): an
// answer Vault gave it then may have been dropped by the verifier's timeout.
type Pause struct {
	Verifier string
	From, To time.Time
}

// PollTimeout is how long a verifier waits for a feed poll (its default
// long-poll wait plus its Vault timeout): an answer it gets later is dropped.
const PollTimeout = 5 * time.Second

// lastOK bounds the moment of the last successful feed poll.
func (p Poll) lastOK() (lo, hi time.Time) {
	return p.Sent.Add(-p.ContactAge), p.Received.Add(-p.ContactAge)
}

// FeedEntry is one change as Vault's feed published it.
type FeedEntry struct {
	Seq   uint64 `json:"seq"`
	KeyID string `json:"key_id"`
	Role  string `json:"role"`
	Op    string `json:"op"`
}

// Final is what the run observed once the load stopped.
type Final struct {
	// Status is Vault's status of every key_id after recovery (read back by
	// root through `lookup`); a key_id missing here was not read back.
	Status map[string]string
	// Answers are the verifiers' last answers after waiting (bounded) for
	// them to agree with Status.
	Answers []Verify
}

// History is everything a run recorded.
type History struct {
	Seed      int64
	Mutations []Mutation
	Verifies  []Verify
	Polls     []Poll
	Begins    []PollBegin
	Pauses    []Pause
	Feed      []FeedEntry
	// FeedComplete is true when the recorder followed the feed without a gap
	// (no reset, no purge overtook it): only then is a missing entry a defect.
	FeedComplete bool
	// NarrowPerm is the permission Narrow removes from a role and Widen restores.
	NarrowPerm string
	Final      Final
	Faults     []Fault
}

// Fault is an injected fault, kept for the report.
type Fault struct {
	At   time.Time
	What string
}

// AuditLine is the part of a verifier audit line the checker reads.
type AuditLine struct {
	Time      time.Time `json:"time"`
	RequestID string    `json:"request_id"`
	KeyID     string    `json:"key_id"`
	Code      string    `json:"code"`
	FeedSeq   *uint64   `json:"feed_seq"`
}

// ReadAudit reads a verifier audit log (JSON lines), keyed by request id.
func ReadAudit(path string) (map[string]AuditLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]AuditLine{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var l AuditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		out[l.RequestID] = l
	}
	return out, sc.Err()
}

// JoinAudit copies feed_seq from the audit lines into the verifies. A decided
// verify without a line, or whose line has no feed_seq, is an error: every
// decision must be audited with the position it was made at.
func JoinAudit(vs []Verify, lines map[string]map[string]AuditLine) error {
	for i := range vs {
		v := &vs[i]
		if !decided(v.Code) {
			continue
		}
		l, ok := lines[v.Verifier][v.RequestID]
		if !ok {
			return fmt.Errorf("verifier %s: no audit line for request %s (%s)", v.Verifier, v.RequestID, v.Code)
		}
		if l.Code != v.Code {
			return fmt.Errorf("verifier %s: request %s answered %s but audited %s", v.Verifier, v.RequestID, v.Code, l.Code)
		}
		if l.FeedSeq == nil {
			return fmt.Errorf("verifier %s: the audit line of request %s has no feed_seq", v.Verifier, v.RequestID)
		}
		v.FeedSeq = *l.FeedSeq
	}
	return nil
}

// decided is an answer with a code (not a 503 or a transport error).
func decided(code string) bool {
	return code != "" && code != "error" && code[0] != 'H'
}

// sortPolls orders polls by verifier, then time.
func sortPolls(ps []Poll) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].Verifier != ps[j].Verifier {
			return ps[i].Verifier < ps[j].Verifier
		}
		return ps[i].Sent.Before(ps[j].Sent)
	})
}
