// Package history checks a recorded history of a live run against the
// revocation invariant of DESIGN §6 and §7, Jepsen-style: concurrent clients
// mutate keys and roles on a real Vault under faults, verifiers answer, and
// afterwards Check decides, from the record alone, whether any answer broke
// the promise. It is a pure function over a History, so synthetic histories
// test it (check_test.go) and the live harness (e2e/history_test.go) only
// records.
//
// Order comes from the change feed, not from clocks: every acknowledged
// mutation answers the `seq` of its feed entry, and every decision's audit
// line carries `feed_seq`, the feed position the verifier had applied
// (DESIGN §4, §6). Both are required: a run without them fails before Check.
//
// One rule needs the wall clock of a single host: "after it hears from Vault"
// (DESIGN §6) is observed through the verifier's last successful poll
// (/metrics feed_last_contact_age_seconds), with the bounds taken the
// conservative way round so that a violation it reports is certain.
//
// "Heard from Vault" has two proofs, the earlier wins: the arrival of the
// verifier's feed polls in Vault's file audit log (auth.display_name,
// request.path and id, type, error), and /metrics as above.
//
// Fields relied on: a mutation answer's `seq`; a verifier audit line's
// `request_id` (the caller's X-Request-Id), `code` and `feed_seq`; /metrics
// `apikeys_verifier_feed_last_contact_age_seconds`; the `changes` feed's seq,
// key_id, role, op and reset; `lookup` status for the read-back.
//
// The package never sees a key or a secret: histories hold key_ids only.
package history
