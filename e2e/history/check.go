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

func (c *checker) committed() []Violation {
	var out []Violation
	for _, v := range c.h.Verifies {
		if v.Code != "VALID" {
			continue
		}
		pos := v.FeedSeq
		if e, ok := blockedAt(c.keys[v.KeyID], pos, v.Received); ok && !(e.state == stDisabled && c.enabledSince(v.KeyID, v.Received)) {
			out = append(out, Violation{Rule: RuleCommitted, KeyID: v.KeyID, Verifier: v.Verifier, At: v.Sent, Seq: pos,
				Detail: fmt.Sprintf("VALID (request %s) at feed_seq %d, but the key was %s at seq %d", v.RequestID, pos, e.state, e.seq)})
			continue
		}
		if v.Permission != "" && v.Permission == c.h.NarrowPerm {
			if e, ok := blockedAt(c.roles[v.Role], pos, v.Received); ok {
				out = append(out, Violation{Rule: RuleCommitted, KeyID: v.KeyID, Verifier: v.Verifier, At: v.Sent, Seq: pos,
					Detail: fmt.Sprintf("VALID for %s (request %s) at feed_seq %d, but role %s lost it at seq %d", v.Permission, v.RequestID, pos, v.Role, e.seq)})
			}
		}
	}
	return out
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
