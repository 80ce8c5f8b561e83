package history

import (
	"sort"
	"time"
)

// buildKeyTimelines places every key state change at its feed seq: from the
// `seq` of acknowledged answers, which also says when the change was asked
// for, and from the feed (changes whose answer was lost: they may have been
// in effect at any time).
func (c *checker) buildKeyTimelines() {
	at := map[string]map[uint64]event{}
	put := func(key string, e event) {
		if key == "" || e.seq == 0 || e.state == "" {
			return
		}
		if at[key] == nil {
			at[key] = map[uint64]event{}
		}
		if old, ok := at[key][e.seq]; !ok || old.invoked.IsZero() {
			at[key][e.seq] = e
		}
	}
	for _, m := range c.h.Mutations {
		if m.Outcome != OK {
			continue
		}
		e := event{seq: m.Seq, invoked: m.Invoke}
		switch m.Op {
		case Issue:
			e.state = stActive
			put(m.NewKeyID, e)
		case Rotate, Revoke: // a rotation's seq is at or after both its entries
			e.state = stRevoked
			put(m.KeyID, e)
		case Disable:
			e.state = stDisabled
			put(m.KeyID, e)
		case Enable:
			e.state = stActive
			put(m.KeyID, e)
		}
	}
	for _, f := range c.h.Feed {
		put(f.KeyID, event{seq: f.Seq, state: map[string]string{"created": stActive, "enabled": stActive, "disabled": stDisabled,
			"revoked": stRevoked, "expired": stRevoked}[f.Op]})
	}
	for key, bySeq := range at {
		for _, e := range bySeq {
			c.keys[key] = append(c.keys[key], e)
		}
		evs := c.keys[key]
		sort.Slice(evs, func(i, j int) bool { return evs[i].seq < evs[j].seq })
	}
}

// buildRoleTimelines places narrowings and widenings at the `seq` of their
// answers. A role-updated entry no acknowledged write answered (a write whose
// answer was lost, the role's creation) is read as a widening that may have
// been in effect at any time: the conservative reading.
func (c *checker) buildRoleTimelines() {
	answered := map[uint64]bool{}
	for role, ms := range c.roleMut {
		for _, m := range ms {
			if m.Outcome == OK && m.Seq != 0 {
				c.roles[role] = append(c.roles[role], event{m.Seq, string(m.Op), m.Invoke})
				answered[m.Seq] = true
			}
		}
	}
	for _, e := range c.h.Feed {
		if e.KeyID == "" && e.Role != "" && e.Op == "role-updated" && !answered[e.Seq] {
			c.roles[e.Role] = append(c.roles[e.Role], event{seq: e.Seq, state: string(Widen)})
		}
	}
	for _, evs := range c.roles {
		sort.Slice(evs, func(i, j int) bool { return evs[i].seq < evs[j].seq })
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
