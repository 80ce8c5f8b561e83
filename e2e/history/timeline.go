package history

import (
	"sort"
	"time"
)

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
