package history

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// reportMax bounds how many violations Report details.
const reportMax = 10

// around is how much of the history Report shows on each side of a violation.
const around = 2 * time.Second

// Report writes the seed, a summary, and for each violation (at most
// reportMax) the history around it: the key's mutations and feed entries, the
// verifier's answers and polls nearby, and the faults injected nearby.
func Report(w io.Writer, h *History, vs []Violation) {
	fmt.Fprintf(w, "history: seed %d (rerun with HISTORY_SEED=%d): %d mutations, %d verifies, %d feed entries (complete: %v), %d polls, %d faults; %d violations\n",
		h.Seed, h.Seed, len(h.Mutations), len(h.Verifies), len(h.Feed), h.FeedComplete, len(h.Polls), len(h.Faults), len(vs))
	// The faults by kind (their first word), so a passing run shows what it survived.
	kinds := map[string]int{}
	for _, f := range h.Faults {
		kind, _, _ := strings.Cut(f.What, " ")
		kinds[kind]++
	}
	fmt.Fprintf(w, "  faults by kind: %v\n", kinds)
	byRule := map[string]int{}
	for _, v := range vs {
		byRule[v.Rule]++
	}
	rules := make([]string, 0, len(byRule))
	for r := range byRule {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	for _, r := range rules {
		fmt.Fprintf(w, "  %s: %d\n", r, byRule[r])
	}
	// Detail the first violation of each rule and key; count the rest.
	type ruleKey struct{ rule, key string }
	first := map[ruleKey]int{}
	var order []ruleKey
	for _, v := range vs {
		k := ruleKey{v.Rule, v.KeyID}
		if first[k] == 0 {
			order = append(order, k)
		}
		first[k]++
	}
	shown := 0
	for _, v := range vs {
		k := ruleKey{v.Rule, v.KeyID}
		n, ok := first[k]
		if !ok {
			continue
		}
		delete(first, k)
		if shown++; shown > reportMax {
			fmt.Fprintf(w, "… and %d more rule/key pairs\n", len(order)-reportMax)
			break
		}
		fmt.Fprintf(w, "\nVIOLATION %d (%d like it for this key): %s\n", shown, n, v)
		context(w, h, v)
	}
}

func near(t, at time.Time) bool {
	return at.IsZero() || t.After(at.Add(-around)) && t.Before(at.Add(around))
}

func stamp(t time.Time) string { return t.Format("15:04:05.000000") }

func context(w io.Writer, h *History, v Violation) {
	for _, m := range h.Mutations {
		if v.KeyID != "" && (m.KeyID == v.KeyID || m.NewKeyID == v.KeyID) {
			fmt.Fprintf(w, "  mutation  %s→%s client=%d %s name=%s key_id=%s new=%s role=%s outcome=%s seq=%d %s\n",
				stamp(m.Invoke), stamp(m.Return), m.Client, m.Op, m.Name, m.KeyID, m.NewKeyID, m.Role, m.Outcome, m.Seq, m.Err)
		}
	}
	for _, e := range h.Feed {
		if e.KeyID == v.KeyID {
			fmt.Fprintf(w, "  feed      seq=%d %s key_id=%s role=%s\n", e.Seq, e.Op, e.KeyID, e.Role)
		}
	}
	shown := 0
	for _, x := range h.Verifies {
		if x.KeyID != v.KeyID || x.Verifier != v.Verifier || !near(x.Sent, v.At) {
			continue
		}
		if shown++; shown > 20 {
			fmt.Fprintln(w, "  verify    …")
			break
		}
		fmt.Fprintf(w, "  verify    %s→%s %s request=%s asked=%q %s feed_seq=%d\n", stamp(x.Sent), stamp(x.Received), x.Verifier, x.RequestID, x.Permission, x.Code, x.FeedSeq)
	}
	shown = 0
	for _, p := range h.Polls {
		if p.Verifier != v.Verifier || !near(p.Sent, v.At) {
			continue
		}
		if shown++; shown > 12 {
			fmt.Fprintln(w, "  poll      …")
			break
		}
		lo, hi := p.lastOK()
		fmt.Fprintf(w, "  poll      %s %s last-ok in [%s, %s]\n", stamp(p.Sent), p.Verifier, stamp(lo), stamp(hi))
	}
	shown = 0
	for _, b := range h.Begins {
		if b.Verifier != v.Verifier || !near(b.At, v.At) {
			continue
		}
		if shown++; shown > 12 {
			fmt.Fprintln(w, "  vault     …")
			break
		}
		fmt.Fprintf(w, "  vault     %s %s feed poll arrived (answered: %v)\n", stamp(b.At), b.Verifier, b.OK)
	}
	for _, f := range h.Faults {
		if near(f.At, v.At) || v.At.IsZero() {
			fmt.Fprintf(w, "  fault     %s %s\n", stamp(f.At), f.What)
		}
	}
}
