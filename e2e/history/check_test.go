package history

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// base: key k issued at seq 1 (role r), revoked at seq 2, answer acknowledged at 100 ms.
func base() *History {
	return &History{
		Seed: 42, NarrowPerm: "r:write", FeedComplete: true,
		Mutations: []Mutation{
			{Client: 1, Op: Issue, Name: "n", NewKeyID: "k", Role: "r", Invoke: at(0), Return: at(10), Outcome: OK, Seq: 1},
			{Client: 1, Op: Revoke, Name: "n", KeyID: "k", Role: "r", Invoke: at(90), Return: at(100), Outcome: OK, Seq: 2},
		},
		Feed:  []FeedEntry{{Seq: 1, KeyID: "k", Role: "r", Op: "created"}, {Seq: 2, KeyID: "k", Role: "r", Op: "revoked"}},
		Final: Final{Status: map[string]string{"k": "revoked"}},
	}
}

func valid(ver string, sent int, feedSeq uint64) Verify {
	return Verify{Verifier: ver, RequestID: "q", KeyID: "k", Role: "r", Sent: at(sent), Received: at(sent + 1), Code: "VALID", FeedSeq: feedSeq}
}

// poll reads a verifier whose last successful poll was at lastOK.
func poll(ver string, sent, lastOK int) Poll {
	return Poll{Verifier: ver, Sent: at(sent), Received: at(sent + 1), Contact: true, ContactAge: at(sent).Sub(at(lastOK))}
}

func rules(vs []Violation) []string {
	out := []string{}
	for _, v := range vs {
		out = append(out, v.Rule)
	}
	return out
}

func TestCleanHistoryPasses(t *testing.T) {
	h := base()
	h.Verifies = []Verify{valid("v1", 20, 1), valid("v1", 95, 1)}
	h.Verifies = append(h.Verifies, Verify{Verifier: "v1", KeyID: "k", Sent: at(300), Received: at(301), Code: "REVOKED", FeedSeq: 2})
	h.Polls = []Poll{poll("v1", 50, 40), poll("v1", 150, 120), poll("v1", 250, 200)}
	h.Final.Answers = []Verify{{Verifier: "v1", KeyID: "k", Code: "REVOKED"}}
	assert.Empty(t, Check(h))
}

func TestValidAtOrPastRevocationSeq(t *testing.T) {
	h := base()
	h.Verifies = []Verify{valid("v1", 200, 2)}
	vs := Check(h)
	require.Equal(t, []string{RuleCommitted}, rules(vs))
	assert.Contains(t, vs[0].Detail, "revoked at seq 2")

	h.Verifies = []Verify{valid("v1", 200, 7)}
	assert.Equal(t, []string{RuleCommitted}, rules(Check(h)), "past the revocation too")

	h.Verifies = []Verify{valid("v1", 200, 1)}
	assert.Empty(t, Check(h), "before the revocation in feed order: allowed, whatever the clock says")
}

// The defect-3 shape: the verifier applies the first page of a backlog that
// does not reach the revocation, counts itself fresh, answers from its cache.
func TestValidAfterHeardFromVault(t *testing.T) {
	h := base()
	h.Polls = []Poll{
		poll("v1", 50, 40),   // before the revocation returned
		poll("v1", 120, 110), // a success after it: the next poll began after
		poll("v1", 140, 130), // that poll applied (a page short of seq 2)
		poll("v1", 400, 390), // caught up
	}
	h.Verifies = []Verify{valid("v1", 125, 1)}
	assert.Empty(t, Check(h), "not yet certain the verifier had heard")

	h.Verifies = []Verify{valid("v1", 150, 1)}
	vs := Check(h)
	require.Equal(t, []string{RuleHeard}, rules(vs))
	assert.Contains(t, vs[0].Detail, "revoke of k")

	h.Verifies = []Verify{valid("v2", 150, 1)}
	assert.Empty(t, Check(h), "another verifier's polls prove nothing about v2")
}

// Vault's audit log shows when each poll arrived: the poll after the first
// one answered after the revocation proves the verifier had applied that one.
func TestValidAfterHeardFromVaultAudit(t *testing.T) {
	h := base()
	h.Begins = []PollBegin{
		{Verifier: "v1", At: at(50), OK: true},
		{Verifier: "v1", At: at(110), OK: false}, // failed: proves nothing
		{Verifier: "v1", At: at(120), OK: true},  // began after the revocation returned
		{Verifier: "v1", At: at(130), OK: true},  // so by now its answer was applied
	}
	h.Verifies = []Verify{valid("v1", 125, 1)}
	assert.Empty(t, Check(h))
	h.Verifies = []Verify{valid("v1", 131, 1)}
	vs := Check(h)
	require.Equal(t, []string{RuleHeard}, rules(vs))

	h.Pauses = []Pause{{Verifier: "v1", From: at(125), To: at(6000)}}
	assert.Empty(t, Check(h), "paused while the answer was due: it may have been dropped")
	h.Pauses = []Pause{{Verifier: "v1", From: at(10), To: at(115)}}
	assert.Equal(t, []string{RuleHeard}, rules(Check(h)), "a pause before the poll does not matter")

	h.Begins[2].OK = false
	assert.Empty(t, Check(h), "the poll after a failed one proves nothing")
}

func TestHeardNeedsDistinctPolls(t *testing.T) {
	h := base()
	// Two reads of the same poll (same last success) are not two polls.
	h.Polls = []Poll{poll("v1", 120, 110), poll("v1", 140, 110)}
	h.Verifies = []Verify{valid("v1", 150, 1)}
	assert.Empty(t, Check(h))
}

func TestDisableThenEnable(t *testing.T) {
	h := base()
	h.Mutations = []Mutation{
		h.Mutations[0],
		{Client: 1, Op: Disable, KeyID: "k", Role: "r", Invoke: at(90), Return: at(100), Outcome: OK, Seq: 2},
		{Client: 1, Op: Enable, KeyID: "k", Role: "r", Invoke: at(300), Return: at(310), Outcome: OK, Seq: 3},
	}
	h.Feed = []FeedEntry{{1, "k", "r", "created"}, {2, "k", "r", "disabled"}, {3, "k", "r", "enabled"}}
	h.Final.Status["k"] = "active"
	h.Polls = []Poll{poll("v1", 120, 110), poll("v1", 140, 130)}

	h.Verifies = []Verify{valid("v1", 500, 3)}
	assert.Empty(t, Check(h), "enabled again")
	h.Verifies = []Verify{valid("v1", 200, 2)}
	assert.ElementsMatch(t, []string{RuleCommitted, RuleHeard}, rules(Check(h)))
	h.Verifies = []Verify{valid("v1", 299, 1)}
	h.Verifies[0].Received = at(305)
	assert.Empty(t, Check(h), "the enable was in flight: VALID may already be right")
}

// An enable written but never published (defect 1's shape) leaves the feed
// saying "disabled" while Vault says active: a VALID then is not stale; the
// missing entry is what is reported.
func TestUnpublishedEnableIsNotAStaleValid(t *testing.T) {
	h := base()
	h.Mutations = []Mutation{
		h.Mutations[0],
		{Client: 1, Op: Disable, KeyID: "k", Role: "r", Invoke: at(90), Return: at(100), Outcome: OK},
		{Client: 1, Op: Enable, KeyID: "k", Role: "r", Invoke: at(300), Return: at(310), Outcome: Unknown},
		{Client: 1, Op: Enable, KeyID: "k", Role: "r", Invoke: at(310), Return: at(320), Outcome: OK},
	}
	h.Feed = []FeedEntry{{1, "k", "r", "created"}, {2, "k", "r", "disabled"}, {3, "x", "r", "created"}}
	h.Final.Status["k"] = "active"
	h.Verifies = []Verify{valid("v1", 500, 3)}
	assert.Equal(t, []string{RuleUnpublished}, rules(Check(h)))
	h.Verifies = []Verify{valid("v1", 200, 3)}
	assert.Equal(t, []string{RuleCommitted, RuleUnpublished}, rules(Check(h)), "before the enable was sent, VALID was stale")
}

func TestNarrowing(t *testing.T) {
	h := base()
	h.Mutations = []Mutation{
		h.Mutations[0],
		{Client: 9, Op: Narrow, Role: "r", Invoke: at(90), Return: at(100), Outcome: OK, Seq: 2},
		{Client: 9, Op: Widen, Role: "r", Invoke: at(300), Return: at(310), Outcome: OK, Seq: 3},
	}
	h.Feed = []FeedEntry{{1, "k", "r", "created"}, {2, "", "r", "role-updated"}, {3, "", "r", "role-updated"}}
	h.Final.Status["k"] = "active"
	asked := func(perm string, sent int, seq uint64) Verify {
		v := valid("v1", sent, seq)
		v.Permission = perm
		return v
	}
	h.Verifies = []Verify{asked("r:write", 200, 2)}
	assert.Equal(t, []string{RuleCommitted}, rules(Check(h)))
	h.Verifies = []Verify{asked("r:read", 200, 2), asked("r:write", 200, 1), asked("r:write", 400, 3)}
	assert.Empty(t, Check(h))

	// The widening was already on its way when the answer left: the verifier
	// may have answered from a lookup that saw it. Not a violation.
	inflight := asked("r:write", 299, 2)
	inflight.Received = at(305)
	h.Verifies = []Verify{inflight}
	assert.Empty(t, Check(h))

	// A role write whose answer was lost: its entry may be a widening.
	h.Mutations = append(h.Mutations, Mutation{Client: 9, Op: Narrow, Role: "r", Invoke: at(320), Outcome: Unknown})
	h.Feed = append(h.Feed, FeedEntry{4, "", "r", "role-updated"})
	h.Mutations[1].Seq, h.Mutations[2].Seq = 2, 3
	// Conservative: that entry may have been in effect at any time, so no
	// VALID for the permission is reported any more.
	h.Verifies = []Verify{asked("r:write", 200, 2)}
	assert.Empty(t, Check(h))
	h.Feed = h.Feed[:3]
	assert.Equal(t, []string{RuleCommitted}, rules(Check(h)), "without the entry: narrowed at seq 2, widened at 3")
}

func TestUnpublished(t *testing.T) {
	h := base()
	h.Feed = h.Feed[:1] // the revocation was written but never published
	assert.Equal(t, []string{RuleUnpublished}, rules(Check(h)))
	h.FeedComplete = false
	assert.Empty(t, Check(h), "a recorder with a gap cannot tell")
}

func TestLostAndUnknownOutcomes(t *testing.T) {
	h := base()
	h.Final.Status["k"] = "active"
	assert.Equal(t, []string{RuleLost}, rules(Check(h)))

	h = base()
	h.Mutations[1] = Mutation{Client: 1, Op: Disable, KeyID: "k", Invoke: at(90), Outcome: Unknown}
	h.Feed = h.Feed[:1]
	for _, st := range []string{"active", "disabled"} {
		h.Final.Status["k"] = st
		assert.Empty(t, Check(h), st)
	}
	h.Final.Status["k"] = "revoked"
	assert.Equal(t, []string{RuleLost}, rules(Check(h)))

	h.Final.Status["k"] = "not_found"
	assert.Equal(t, []string{RuleLost}, rules(Check(h)), "an acknowledged issue vanished")
}

func TestRotateRevokesTheOldKey(t *testing.T) {
	h := base()
	h.Mutations[1] = Mutation{Client: 1, Op: Rotate, Name: "n", KeyID: "k", NewKeyID: "k2", Role: "r", Invoke: at(90), Return: at(100), Outcome: OK}
	h.Feed = append(h.Feed, FeedEntry{3, "k2", "r", "created"})
	h.Final.Status["k2"] = "active"
	h.Verifies = []Verify{valid("v1", 200, 3)}
	assert.Equal(t, []string{RuleCommitted}, rules(Check(h)))
	v := valid("v1", 200, 3)
	v.KeyID = "k2"
	h.Verifies = []Verify{v}
	assert.Empty(t, Check(h))
}

func TestNotConverged(t *testing.T) {
	h := base()
	h.Final.Answers = []Verify{{Verifier: "v1", KeyID: "k", Code: "VALID"}, {Verifier: "v2", KeyID: "k", Code: "REVOKED"}}
	vs := Check(h)
	require.Equal(t, []string{RuleConverged}, rules(vs))
	assert.Equal(t, "v1", vs[0].Verifier)
}

func TestAuditJoin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	require.NoError(t, os.WriteFile(path, []byte(
		`{"time":"2026-11-25T12:00:00Z","request_id":"a","key_id":"k","code":"VALID","feed_seq":7}`+"\n"+
			`{"time":"2026-11-25T12:00:00Z","request_id":"b","key_id":"k","code":"REVOKED"}`+"\n"), 0o600))
	lines, err := ReadAudit(path)
	require.NoError(t, err)
	vs := []Verify{{Verifier: "v1", RequestID: "a", Code: "VALID"}, {Verifier: "v1", RequestID: "b", Code: "REVOKED"}, {Verifier: "v1", RequestID: "c", Code: "HTTP 503"}}
	require.ErrorContains(t, JoinAudit(vs, map[string]map[string]AuditLine{"v1": lines}), "request b has no feed_seq")
	vs = []Verify{vs[0], vs[2]}
	require.NoError(t, JoinAudit(vs, map[string]map[string]AuditLine{"v1": lines}))
	assert.Equal(t, uint64(7), vs[0].FeedSeq)

	assert.ErrorContains(t, JoinAudit([]Verify{{Verifier: "v1", RequestID: "z", Code: "VALID"}}, map[string]map[string]AuditLine{"v1": lines}), "no audit line")
	assert.ErrorContains(t, JoinAudit([]Verify{{Verifier: "v1", RequestID: "a", Code: "REVOKED"}}, map[string]map[string]AuditLine{"v1": lines}), "audited VALID")
}

func TestReportShowsSeedAndContext(t *testing.T) {
	h := base()
	h.Verifies = []Verify{valid("v1", 200, 2)}
	h.Faults = []Fault{{At: at(150), What: "SIGSTOP v1"}}
	var buf bytes.Buffer
	Report(&buf, h, Check(h))
	out := buf.String()
	assert.Contains(t, out, "seed 42")
	assert.Contains(t, out, "VIOLATION 1 (1 like it for this key): valid-after-committed")
	assert.Contains(t, out, "SIGSTOP v1")
	assert.Contains(t, out, "feed      seq=2 revoked")
}
