package history

import (
	"sort"
	"time"
)

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
