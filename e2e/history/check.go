package history

import (
	"fmt"
	"sort"
	"time"
)

// Rules Check enforces.
const (
	// RuleCommitted: VALID at a feed position at or past a committed
	// revocation, disable or narrowing of the key (DESIGN §6, ordered by the feed).
	RuleCommitted = "valid-after-committed"
	// RuleHeard: VALID after the verifier completed a successful feed poll that
	// began after the revocation, disable or narrowing was acknowledged — it
	// had heard from Vault (DESIGN §6), even if it had not applied the entry yet.
	RuleHeard = "valid-after-heard"
	// RuleUnpublished: an acknowledged mutation with no feed entry (DESIGN §4).
	RuleUnpublished = "unpublished"
	// RuleLost: after recovery Vault's state is not one the acknowledged
	// mutations allow (DESIGN §7).
	RuleLost = "lost"
	// RuleConverged: once the load stopped, a verifier never came to agree with Vault.
	RuleConverged = "not-converged"
)

// Violation is one broken promise.
type Violation struct {
	Rule     string
	KeyID    string
	Verifier string
	At       time.Time
	Seq      uint64
	Detail   string
}

func (v Violation) String() string {
	s := fmt.Sprintf("%s key_id=%s", v.Rule, v.KeyID)
	if v.Verifier != "" {
		s += " verifier=" + v.Verifier
	}
	if !v.At.IsZero() {
		s += " at=" + v.At.Format("15:04:05.000000")
	}
	return s + ": " + v.Detail
}

// Check returns every violation in h, in the order of the rules above.
func Check(h *History) []Violation {
	c := newChecker(h)
	var out []Violation
	out = append(out, c.committed()...)
	out = append(out, c.heard()...)
	out = append(out, c.unpublished()...)
	out = append(out, c.lost()...)
	out = append(out, c.converged()...)
	return out
}

// blocked states: a key in one of them must not answer VALID.
const (
	stActive   = "active"
	stDisabled = "disabled"
	stRevoked  = "revoked"
)

type event struct {
	seq   uint64
	state string // key: a status; role: "narrow" or "widen"
	// invoked is when the client sent the mutation behind it; zero when the
	// event comes from the feed alone (then it may have been in effect at any time).
	invoked time.Time
}

// permits reports whether an event lifts a block (an enable, a widening).
func (e event) permits() bool { return e.state == stActive || e.state == string(Widen) }

type checker struct {
	h       *History
	keys    map[string][]event    // key_id -> its states by feed seq
	roles   map[string][]event    // role -> narrow/widen by feed seq
	muts    map[string][]Mutation // key_id -> its mutations, in order
	roleMut map[string][]Mutation // role -> its writes, in order
	polls   map[string][]Poll     // verifier -> polls, in order
	begins  map[string][]PollBegin
	heardAt map[string]time.Time // memo of heardAfter
}

func newChecker(h *History) *checker {
	c := &checker{h: h, keys: map[string][]event{}, roles: map[string][]event{}, muts: map[string][]Mutation{},
		roleMut: map[string][]Mutation{}, polls: map[string][]Poll{}, begins: map[string][]PollBegin{}, heardAt: map[string]time.Time{}}
	for _, m := range h.Mutations {
		switch m.Op {
		case Narrow, Widen:
			c.roleMut[m.Role] = append(c.roleMut[m.Role], m)
			continue
		case Issue, Rotate:
			if m.NewKeyID != "" { // an issue whose answer was lost names no key
				c.muts[m.NewKeyID] = append(c.muts[m.NewKeyID], m)
			}
		}
		if m.Op != Issue {
			c.muts[m.KeyID] = append(c.muts[m.KeyID], m)
		}
	}
	for _, ms := range [](map[string][]Mutation){c.muts, c.roleMut} {
		for _, list := range ms {
			sort.SliceStable(list, func(i, j int) bool { return list[i].Invoke.Before(list[j].Invoke) })
		}
	}
	ps := append([]Poll(nil), h.Polls...)
	sortPolls(ps)
	for _, p := range ps {
		c.polls[p.Verifier] = append(c.polls[p.Verifier], p)
	}
	for _, b := range h.Begins {
		c.begins[b.Verifier] = append(c.begins[b.Verifier], b)
	}
	for _, bs := range c.begins {
		sort.SliceStable(bs, func(i, j int) bool { return bs[i].At.Before(bs[j].At) })
	}
	c.buildKeyTimelines()
	c.buildRoleTimelines()
	return c
}

// buildKeyTimelines places every key state change at its feed seq: from the
// feed itself, and from the seq of acknowledged answers (which stands even if
// the recorder missed the entry).
func (c *checker) buildKeyTimelines() {
	at := map[string]map[uint64]string{}
	put := func(key string, seq uint64, st string) {
		if key == "" || seq == 0 || st == "" {
			return
		}
		if at[key] == nil {
			at[key] = map[uint64]string{}
		}
		at[key][seq] = st
	}
	for _, e := range c.h.Feed {
		put(e.KeyID, e.Seq, map[string]string{"created": stActive, "enabled": stActive, "disabled": stDisabled,
			"revoked": stRevoked, "expired": stRevoked}[e.Op])
	}
	for _, m := range c.h.Mutations {
		if m.Outcome != OK || m.Seq == 0 {
			continue
		}
		switch m.Op {
		case Issue:
			put(m.NewKeyID, m.Seq, stActive)
		case Rotate: // the answer's seq is at or after both entries
			put(m.KeyID, m.Seq, stRevoked)
		case Disable:
			put(m.KeyID, m.Seq, stDisabled)
		case Enable:
			put(m.KeyID, m.Seq, stActive)
		case Revoke:
			put(m.KeyID, m.Seq, stRevoked)
		}
	}
	for key, bySeq := range at {
		for seq, st := range bySeq {
			c.keys[key] = append(c.keys[key], event{seq: seq, state: st})
		}
		evs := c.keys[key]
		sort.Slice(evs, func(i, j int) bool { return evs[i].seq < evs[j].seq })
		c.timeEnables(key, evs)
	}
}

// timeEnables gives each enable of key the time its client invoked it, when
// the k-th enable entry is certainly the k-th enable request (as many of
// each); otherwise they stay untimed, which the rules read as "may have been
// in effect at any time".
func (c *checker) timeEnables(key string, evs []event) {
	var enables []Mutation
	for _, m := range c.muts[key] {
		if m.Op == Enable && m.Outcome != Failed {
			enables = append(enables, m)
		}
	}
	var idx []int
	for i, e := range evs {
		if e.state == stActive && i > 0 {
			idx = append(idx, i)
		}
	}
	if len(idx) != len(enables) {
		return
	}
	for k, i := range idx {
		evs[i].invoked = enables[k].Invoke
	}
}

// buildRoleTimelines places narrowings and widenings at their feed seq: the
// answer's seq when it has one, else the k-th acknowledged write of a role is
// its k-th role-updated entry — only while that pairing is certain (no write
// with an unknown outcome, as many entries as writes).
func (c *checker) buildRoleTimelines() {
	entries := map[string][]uint64{}
	for _, e := range c.h.Feed {
		if e.KeyID == "" && e.Role != "" && e.Op == "role-updated" {
			entries[e.Role] = append(entries[e.Role], e.Seq)
		}
	}
	for role, ms := range c.roleMut {
		seqs := entries[role]
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		var ok []Mutation
		pairable := c.h.FeedComplete
		for _, m := range ms {
			switch m.Outcome {
			case OK:
				ok = append(ok, m)
			case Unknown:
				pairable = false
			}
		}
		pairable = pairable && len(ok) == len(seqs)
		for i, m := range ok {
			seq := m.Seq
			if seq == 0 && pairable {
				seq = seqs[i]
			}
			if seq != 0 {
				c.roles[role] = append(c.roles[role], event{seq, string(m.Op), m.Invoke})
			}
		}
		sort.Slice(c.roles[role], func(i, j int) bool { return c.roles[role][i].seq < c.roles[role][j].seq })
	}
}

// stateAt is the last event at or before seq ("" if none).
func stateAt(evs []event, seq uint64) (event, bool) {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].seq > seq })
	if i == 0 {
		return event{}, false
	}
	return evs[i-1], true
}

// blockedAt returns the blocking event in force at seq, unless a later
// permitting event may already have been in effect when the answer left the
// verifier (invoked before received): a feed position says which changes the
// verifier had applied, and an answer by a fresh lookup may reflect more.
func blockedAt(evs []event, seq uint64, received time.Time) (event, bool) {
	e, ok := stateAt(evs, seq)
	if !ok || e.permits() {
		return event{}, false
	}
	for _, later := range evs {
		if later.seq > seq && later.permits() && (later.invoked.IsZero() || later.invoked.Before(received)) {
			return event{}, false
		}
	}
	return e, true
}

// enabledSince reports whether an enable of key (acknowledged or not) was
// invoked after the last disable sent before t: then the key may be active in
// Vault even where the feed never said so (an enable written but unpublished
// is its own violation, RuleUnpublished), and a VALID is no proof of a stale
// answer.
func (c *checker) enabledSince(key string, t time.Time) bool {
	var since time.Time
	for _, m := range c.muts[key] {
		if m.Op == Disable && m.Outcome != Failed && m.Invoke.Before(t) {
			since = m.Invoke
		}
	}
	return undone(afterTime(c.muts[key], since), Enable, t)
}

func afterTime(ms []Mutation, t time.Time) []Mutation {
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Invoke.After(t) })
	return ms[i:]
}

// position is the verifier's feed position for v: the audited feed_seq, or a
// lower bound (the largest cursor it reported before v was sent).
func (c *checker) position(v Verify) (seq uint64, inferred bool) {
	if v.HasFeedSeq {
		return v.FeedSeq, false
	}
	for _, p := range c.polls[v.Verifier] {
		if !p.Received.Before(v.Sent) {
			break
		}
		seq = max(seq, p.Cursor)
	}
	return seq, true
}

func (c *checker) committed() []Violation {
	var out []Violation
	for _, v := range c.h.Verifies {
		if v.Code != "VALID" {
			continue
		}
		pos, inferred := c.position(v)
		how := "feed_seq"
		if inferred {
			how = "feed position ≥ (inferred from /metrics feed_cursor)"
		}
		if e, ok := blockedAt(c.keys[v.KeyID], pos, v.Received); ok && !(e.state == stDisabled && c.enabledSince(v.KeyID, v.Received)) {
			out = append(out, Violation{Rule: RuleCommitted, KeyID: v.KeyID, Verifier: v.Verifier, At: v.Sent, Seq: pos,
				Detail: fmt.Sprintf("VALID (request %s) at %s %d, but the key was %s at seq %d", v.RequestID, how, pos, e.state, e.seq)})
			continue
		}
		if v.Permission != "" && v.Permission == c.h.NarrowPerm {
			if e, ok := blockedAt(c.roles[v.Role], pos, v.Received); ok {
				out = append(out, Violation{Rule: RuleCommitted, KeyID: v.KeyID, Verifier: v.Verifier, At: v.Sent, Seq: pos,
					Detail: fmt.Sprintf("VALID for %s (request %s) at %s %d, but role %s lost it at seq %d", v.Permission, v.RequestID, how, pos, v.Role, e.seq)})
			}
		}
	}
	return out
}

// heardAfter is the earliest moment by which verifier ver had certainly
// applied a successful poll that began after t; zero if the record never
// shows one. Two records can prove it, and the earlier proof wins:
//
//   - Vault's view (Begins): the first poll that arrived after t and that
//     Vault answered; the verifier applies an answer before it sends its next
//     poll, so the next arrival is the moment. A poll the verifier may have
//     dropped (it was paused while waiting for the answer) proves nothing.
//   - The verifier's /metrics (Polls): read i shows a success after t (its
//     lower bound is past t); a later read j shows a success strictly after
//     that one, so that poll began after t and was applied by j's upper bound.
func (c *checker) heardAfter(ver string, t time.Time) time.Time {
	memo := ver + "\x00" + t.String()
	if at, ok := c.heardAt[memo]; ok {
		return at
	}
	at := c.heardFromBegins(ver, t)
	if m := c.heardFromMetrics(ver, t); !m.IsZero() && (at.IsZero() || m.Before(at)) {
		at = m
	}
	c.heardAt[memo] = at
	return at
}

func (c *checker) heardFromBegins(ver string, t time.Time) time.Time {
	bs := c.begins[ver]
	i := sort.Search(len(bs), func(i int) bool { return bs[i].At.After(t) })
	for ; i < len(bs); i++ {
		if bs[i].OK && !c.pausedWithin(ver, bs[i].At, bs[i].At.Add(PollTimeout)) {
			break
		}
	}
	if i+1 < len(bs) {
		return bs[i+1].At
	}
	return time.Time{}
}

// pausedWithin reports whether ver was stopped at some time in [from, to].
func (c *checker) pausedWithin(ver string, from, to time.Time) bool {
	for _, p := range c.h.Pauses {
		if p.Verifier == ver && !p.From.After(to) && !p.To.Before(from) {
			return true
		}
	}
	return false
}

func (c *checker) heardFromMetrics(ver string, t time.Time) time.Time {
	ps := c.polls[ver]
	i := sort.Search(len(ps), func(i int) bool { return ps[i].Sent.After(t) })
	for ; i < len(ps); i++ {
		if lo, _ := ps[i].lastOK(); ps[i].Contact && lo.After(t) {
			break
		}
	}
	if i < len(ps) {
		_, hiI := ps[i].lastOK()
		for j := i + 1; j < len(ps); j++ {
			if lo, hi := ps[j].lastOK(); ps[j].Contact && lo.After(hiI) {
				return hi
			}
		}
	}
	return time.Time{}
}

// blocker is an acknowledged mutation that forbids VALID for v, still in
// force when v was answered (nothing that could undo it had been invoked).
func (c *checker) blockers(v Verify) []Mutation {
	var out []Mutation
	ms := c.muts[v.KeyID]
	for i, m := range ms {
		if m.Outcome != OK {
			continue
		}
		switch {
		case m.Op == Revoke, m.Op == Rotate && m.KeyID == v.KeyID:
			out = append(out, m)
		case m.Op == Disable && !undone(ms[i+1:], Enable, v.Received):
			out = append(out, m)
		}
	}
	if v.Permission != "" && v.Permission == c.h.NarrowPerm {
		rs := c.roleMut[v.Role]
		for i, m := range rs {
			if m.Outcome == OK && m.Op == Narrow && !undone(rs[i+1:], Widen, v.Received) {
				out = append(out, m)
			}
		}
	}
	return out
}

// undone reports whether a later op of kind undo (in any outcome but a clear
// failure) was invoked before t.
func undone(later []Mutation, undo Op, t time.Time) bool {
	for _, m := range later {
		if m.Op == undo && m.Outcome != Failed && m.Invoke.Before(t) {
			return true
		}
	}
	return false
}

func (c *checker) heard() []Violation {
	var out []Violation
	for _, v := range c.h.Verifies {
		if v.Code != "VALID" {
			continue
		}
		for _, m := range c.blockers(v) {
			at := c.heardAfter(v.Verifier, m.Return)
			if at.IsZero() || !v.Sent.After(at) {
				continue
			}
			out = append(out, Violation{Rule: RuleHeard, KeyID: v.KeyID, Verifier: v.Verifier, At: v.Sent,
				Detail: fmt.Sprintf("VALID (request %s, asked %q) sent %s after the verifier had applied a feed poll begun after %s of %s returned (%s)",
					v.RequestID, v.Permission, v.Sent.Sub(at).Round(time.Microsecond), m.Op, target(m), m.Return.Format("15:04:05.000000"))})
			break
		}
	}
	return out
}

func target(m Mutation) string {
	if m.KeyID == "" {
		return "role " + m.Role
	}
	return m.KeyID
}

// feedOps maps an acknowledged key mutation to the entries it must have published.
func feedOps(m Mutation) [][2]string {
	switch m.Op {
	case Issue:
		return [][2]string{{m.NewKeyID, "created"}}
	case Rotate:
		return [][2]string{{m.KeyID, "revoked"}, {m.NewKeyID, "created"}}
	case Disable:
		return [][2]string{{m.KeyID, "disabled"}}
	case Enable:
		return [][2]string{{m.KeyID, "enabled"}}
	case Revoke:
		return [][2]string{{m.KeyID, "revoked"}}
	case Patch:
		return [][2]string{{m.KeyID, "updated"}}
	}
	return nil
}

func (c *checker) unpublished() []Violation {
	if !c.h.FeedComplete {
		return nil
	}
	have := map[[2]string]bool{}
	for _, e := range c.h.Feed {
		have[[2]string{e.KeyID, e.Op}] = true
	}
	var out []Violation
	for _, m := range c.h.Mutations {
		if m.Outcome != OK {
			continue
		}
		for _, want := range feedOps(m) {
			if !have[want] {
				out = append(out, Violation{Rule: RuleUnpublished, KeyID: want[0], At: m.Return,
					Detail: fmt.Sprintf("%s by client %d acknowledged at %s, but the feed has no %q entry for the key", m.Op, m.Client, m.Return.Format("15:04:05.000000"), want[1])})
			}
		}
	}
	return out
}

// allowed is the set of statuses the mutations of key permit after recovery.
func allowed(key string, ms []Mutation) map[string]bool {
	set := map[string]bool{}
	for _, m := range ms {
		var next string
		switch {
		case m.Op == Issue || m.Op == Rotate && m.NewKeyID == key:
			next = stActive
		case m.Op == Rotate || m.Op == Revoke:
			next = stRevoked
		case m.Op == Disable:
			next = stDisabled
		case m.Op == Enable:
			next = stActive
		default:
			continue
		}
		switch m.Outcome {
		case OK:
			if set[stRevoked] && next != stRevoked {
				set = map[string]bool{stRevoked: true} // revocation is final
				continue
			}
			set = map[string]bool{next: true}
		case Unknown:
			if len(set) == 0 { // an issue that may not have happened
				set["not_found"] = true
			}
			if !set[stRevoked] || next == stRevoked {
				set[next] = true
			}
		}
	}
	return set
}

func (c *checker) lost() []Violation {
	var out []Violation
	keys := make([]string, 0, len(c.muts))
	for k := range c.muts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		got, read := c.h.Final.Status[key]
		want := allowed(key, c.muts[key])
		if !read || len(want) == 0 || want[got] {
			continue
		}
		out = append(out, Violation{Rule: RuleLost, KeyID: key,
			Detail: fmt.Sprintf("Vault reads back %q after recovery; the acknowledged mutations allow only %v", got, sortedKeys(want))})
	}
	return out
}

// Expected is the code a verifier must answer, with no requirement, for a key
// Vault reports in status.
func Expected(status string) string {
	return map[string]string{stActive: "VALID", stDisabled: "DISABLED", stRevoked: "REVOKED",
		"expired": "EXPIRED", "not_found": "NOT_FOUND"}[status]
}

func (c *checker) converged() []Violation {
	var out []Violation
	for _, a := range c.h.Final.Answers {
		st, ok := c.h.Final.Status[a.KeyID]
		if !ok || a.Code == Expected(st) {
			continue
		}
		out = append(out, Violation{Rule: RuleConverged, KeyID: a.KeyID, Verifier: a.Verifier, At: a.Sent,
			Detail: fmt.Sprintf("answers %s once the load stopped, Vault says %s", a.Code, st)})
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
