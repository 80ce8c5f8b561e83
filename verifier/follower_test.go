package verifier

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func newTestFollower(cursor uint64) *follower {
	f := &follower{cache: newCache(16), log: hclog.NewNullLogger(), metrics: newMetrics(), now: time.Now, ready: make(chan struct{})}
	f.cursor.Store(cursor)
	f.heard.Store(cursor)
	return f
}

// counterValue reads a counter of m's registry by name.
func counterValue(t *testing.T, m *metrics, name string) float64 {
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == ns+"_"+name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// histogramCount reads how many observations a histogram of m's registry has.
func histogramCount(t *testing.T, m *metrics, name string) uint64 {
	fams, err := m.reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() == ns+"_"+name {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no histogram %s", name)
	return 0
}

// Feed lag is measured on the changes that evict: a creation evicts nothing
// and may come late on purpose (hold_created).
func TestFeedLagLeavesOutCreations(t *testing.T) {
	f := newTestFollower(0)
	at := time.Now().Add(-time.Millisecond)
	f.apply(wire.Changes{Head: 2, Changes: []wire.Change{
		{Seq: 1, ID: "a", KeyID: "k1", Op: wire.OpCreated, Time: at},
		{Seq: 2, ID: "b", KeyID: "k1", Op: wire.OpRevoked, Time: at},
	}})
	assert.Equal(t, uint64(1), histogramCount(t, f.metrics, "feed_lag_seconds"))
	assert.Equal(t, 2.0, counterValue(t, f.metrics, "feed_changes_total"))
}

func TestFollowerAppliesConsecutiveChanges(t *testing.T) {
	f := newTestFollower(5)
	f.apply(wire.Changes{Head: 7, Changes: []wire.Change{
		{Seq: 5, ID: "old", KeyID: "k0"}, // already applied: skipped
		{Seq: 6, ID: "a", KeyID: "k1"},
		{Seq: 7, ID: "b", Role: "ops"},
	}})
	assert.Equal(t, uint64(7), f.Cursor())
	assert.Equal(t, "b", f.cursorID)
	assert.False(t, f.behind())
	assert.Equal(t, 2.0, counterValue(t, f.metrics, "feed_changes_total"))
	assert.Equal(t, 0.0, counterValue(t, f.metrics, "feed_resets_total"))
}

// Whatever the follower cannot vouch for flushes the cache and moves the
// cursor to the head: a reset, a head behind the cursor, a gap in the seqs,
// or a head that moved with nothing sent.
func TestFollowerFlushesWhenItCannotVouch(t *testing.T) {
	for name, ch := range map[string]wire.Changes{
		"reset":        {Reset: true, Head: 3},
		"head behind":  {Head: 2},
		"gap":          {Head: 9, Changes: []wire.Change{{Seq: 6, ID: "a", KeyID: "k1"}, {Seq: 8, ID: "c", KeyID: "k2"}, {Seq: 9, ID: "d", KeyID: "k3"}}},
		"nothing sent": {Head: 9},
	} {
		f := newTestFollower(5)
		f.apply(ch)
		assert.Equal(t, ch.Head, f.Cursor(), name)
		assert.Equal(t, 1.0, counterValue(t, f.metrics, "feed_resets_total"), name)
		if name == "gap" {
			assert.Equal(t, "d", f.cursorID, "the head's id is known from the answer")
		}
	}
}

// TestFollowerPlacesEveryKindOfChange: a key change drops the key (its
// creation keeps a found one, see cache.Created; its revocation turns it into
// its revoked form, see cache.Revoked), a role
// change the role's keys and the keys its holders created, a tenant or
// allow-list change (a tenant and no key) the tenant's keys, and a change
// naming nothing everything.
func TestFollowerPlacesEveryKindOfChange(t *testing.T) {
	f := newTestFollower(0)
	fill := func() {
		for _, r := range []*cachedKey{
			tenantRec("k1", "ops", "acme", ""), tenantRec("k2", "ops", "globex", "lead"),
			tenantRec("k3", "dev", "acme", ""), tenantRec("k4", "dev", "globex", ""),
		} {
			f.cache.Insert(r, f.Cursor())
		}
	}
	cached := func() []string {
		var ids []string
		for _, id := range []string{"k1", "k2", "k3", "k4"} {
			if f.cache.Get(id) != nil {
				ids = append(ids, id)
			}
		}
		return ids
	}
	for _, tc := range []struct {
		change  wire.Change
		left    []string
		revoked string // the key left cached in its revoked form
	}{
		{change: wire.Change{KeyID: "k1", Tenant: "acme", Role: "ops", Op: wire.OpDisabled}, left: []string{"k2", "k3", "k4"}},
		{change: wire.Change{KeyID: "k1", Tenant: "acme", Role: "ops", Op: wire.OpUpdated}, left: []string{"k2", "k3", "k4"}},
		// A revocation is final: the key stays, refusing.
		{change: wire.Change{KeyID: "k1", Tenant: "acme", Role: "ops", Op: wire.OpRevoked}, left: []string{"k1", "k2", "k3", "k4"}, revoked: "k1"},
		// A key's creation: its found record was read after it was written.
		{change: wire.Change{KeyID: "k1", Tenant: "acme", Role: "ops", Op: wire.OpCreated}, left: []string{"k1", "k2", "k3", "k4"}},
		{change: wire.Change{Role: "lead", Op: wire.OpRoleUpdated}, left: []string{"k1", "k3", "k4"}},
		{change: wire.Change{Tenant: "acme", Op: wire.OpTenantUpdated}, left: []string{"k2", "k4"}},
		{change: wire.Change{Tenant: "globex", Op: wire.OpTenantDeleted}, left: []string{"k1", "k3"}},
		{change: wire.Change{Tenant: "acme", Allowlist: "office", Op: wire.OpAllowlistUpdated}, left: []string{"k2", "k4"}},
		{change: wire.Change{Tenant: "globex", Allowlist: "office", Op: wire.OpAllowlistDeleted}, left: []string{"k1", "k3"}},
		{change: wire.Change{Op: "something-new"}},
	} {
		fill()
		require.Equal(t, []string{"k1", "k2", "k3", "k4"}, cached())
		seq := f.Cursor() + 1
		f.apply(wire.Changes{Head: seq, Changes: []wire.Change{{Seq: seq, ID: "x", KeyID: tc.change.KeyID,
			Role: tc.change.Role, Tenant: tc.change.Tenant, Allowlist: tc.change.Allowlist, Op: tc.change.Op}}})
		assert.Equal(t, tc.left, cached(), "%+v", tc.change)
		for _, id := range tc.left {
			want := statusActive
			if id == tc.revoked {
				want = statusRevoked
			}
			assert.Equal(t, want, f.cache.Get(id).status, "%s after %+v", id, tc.change)
		}
	}
}
