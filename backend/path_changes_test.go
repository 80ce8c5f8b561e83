package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func (e *testEnv) changes(after uint64, wait string) wire.Changes {
	e.t.Helper()
	data := e.mustOK(logical.ReadOperation, "changes", map[string]interface{}{"after": fmt.Sprint(after), "wait": wait}).Data
	raw, err := json.Marshal(data)
	require.NoError(e.t, err)
	var out wire.Changes
	require.NoError(e.t, json.Unmarshal(raw, &out))
	return out
}

func TestFeedOrdersEveryMutation(t *testing.T) {
	e := configured(t)
	base := e.changes(0, "").Head // creating the role published one entry
	require.Equal(t, uint64(1), base)
	a := e.issue("a", nil)["key_id"].(string)
	b := e.issue("b", nil)["key_id"].(string)
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/a", nil)
	e.mustOK(logical.UpdateOperation, "roles/dev", map[string]interface{}{"permissions": "clusters:read"})
	e.mustOK(logical.UpdateOperation, "revoke", map[string]interface{}{"key_id": b})

	got := e.changes(base, "")
	require.Len(t, got.Changes, 5)
	assert.Equal(t, base+5, got.Head)
	assert.False(t, got.Reset)
	want := []struct{ id, op string }{{a, "created"}, {b, "created"}, {a, "revoked"}, {"", "role-updated"}, {b, "revoked"}}
	for i, w := range want {
		assert.Equal(t, base+uint64(i+1), got.Changes[i].Seq)
		assert.Equal(t, w.id, got.Changes[i].KeyID)
		assert.Equal(t, w.op, got.Changes[i].Op)
	}
	// Usage is not a mutation.
	e.mustOK(logical.UpdateOperation, "usage", map[string]interface{}{"usage": []interface{}{
		map[string]interface{}{"key_id": a, "count": 2, "last_used_at": "2026-01-01T00:00:00Z"}}})
	assert.Equal(t, base+5, e.changes(0, "").Head)
	// Paging from the middle.
	mid := e.changes(base+3, "")
	require.Len(t, mid.Changes, 2)
	assert.Equal(t, base+4, mid.Changes[0].Seq)
}

func TestLongPollWakesOnChange(t *testing.T) {
	e := configured(t)
	head := e.changes(0, "").Head
	type result struct {
		ch  wire.Changes
		dur time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		data, _ := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "changes", Storage: e.s,
			Data: map[string]interface{}{"after": fmt.Sprint(head), "wait": "5s"}})
		raw, _ := json.Marshal(data.Data)
		var ch wire.Changes
		_ = json.Unmarshal(raw, &ch)
		done <- result{ch, time.Since(start)}
	}()
	time.Sleep(100 * time.Millisecond)
	changedAt := time.Now()
	e.issue("a", nil)
	r := <-done
	require.Len(t, r.ch.Changes, 1)
	assert.Less(t, time.Since(changedAt), time.Second, "the poll must return on the change, not at the end of its wait")

	// With nothing new, the poll waits about as long as asked, capped at 5s.
	start = time.Now()
	got := e.changes(r.ch.Head, "200ms")
	assert.Empty(t, got.Changes)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
	w, err := parseWait("30s")
	require.NoError(t, err)
	assert.Equal(t, wire.MaxWait, w)
}

func TestFeedResetAfterRetention(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	e.mustOK(logical.UpdateOperation, "config", map[string]interface{}{"feed_retention": "1h"})
	e.issue("a", nil)
	e.issue("b", nil)
	clock = clock.Add(2 * time.Hour)
	e.issue("c", nil)
	res := e.tidy()
	assert.EqualValues(t, 3, toInt(res["feed_entries_purged"]), "the role's entry and two keys'")

	got := e.changes(0, "")
	assert.True(t, got.Reset, "after=0 is behind retention")
	require.Len(t, got.Changes, 1)
	assert.Equal(t, uint64(4), got.Changes[0].Seq)
	cur := e.changes(3, "")
	assert.False(t, cur.Reset, "a follower at the tail is not behind")
	ahead := e.changes(99, "")
	assert.True(t, ahead.Reset, "a cursor beyond head is from another history")
}

func TestFeedSurvivesRestart(t *testing.T) {
	e := configured(t)
	for i := 0; i < feedCheckpointEvery+10; i++ {
		_, err := e.b.feed.Append(context.Background(), e.s, wire.Change{Role: "dev", Op: wire.OpRoleUpdated}, time.Now())
		require.NoError(t, err)
	}
	f := NewFeed()
	require.NoError(t, f.Load(context.Background(), e.s))
	assert.Equal(t, e.b.feed.head, f.head)
	seq, err := f.Append(context.Background(), e.s, wire.Change{Role: "dev", Op: wire.OpRoleUpdated}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, e.b.feed.head+1, seq)
}

func toInt(v interface{}) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case int:
		return n
	case uint64:
		return int(n)
	case float64:
		return int(n)
	}
	return -1
}

// hold_created holds a long-poll answer that only announces new keys, never
// one with any other change, never without wait and never past it, and is
// checked like wait.
func TestChangesHoldCreated(t *testing.T) {
	e := configured(t)
	var holds []time.Duration // each hold that began waiting, by its length
	e.b.feed.holding = func(d time.Duration) { holds = append(holds, d) }
	head := e.changes(0, "").Head
	e.issue("a", nil)
	read := func(wait, hold string) (wire.Changes, time.Duration) {
		start := time.Now()
		resp := e.mustOK(logical.ReadOperation, "changes", map[string]interface{}{"after": fmt.Sprint(head), "wait": wait, "hold_created": hold})
		raw, err := json.Marshal(resp.Data)
		require.NoError(t, err)
		var out wire.Changes
		require.NoError(t, json.Unmarshal(raw, &out))
		return out, time.Since(start)
	}
	got, took := read("5s", "60ms")
	require.Len(t, got.Changes, 1)
	assert.GreaterOrEqual(t, took, 60*time.Millisecond, "a page of one new key is held")
	require.Equal(t, []time.Duration{60 * time.Millisecond}, holds)

	got, _ = read("0s", "60ms")
	require.Len(t, got.Changes, 1)
	assert.Len(t, holds, 1, "no hold without wait")
	read("40ms", "1s")
	require.Len(t, holds, 2)
	assert.LessOrEqual(t, holds[1], 40*time.Millisecond, "never past wait")

	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/a", nil)
	got, _ = read("5s", "60ms")
	require.Len(t, got.Changes, 2)
	assert.Len(t, holds, 2, "a page with a revocation is answered at once")
	hold, err := parseDuration("hold_created", "1s", wire.MaxHoldCreated)
	require.NoError(t, err)
	assert.Equal(t, wire.MaxHoldCreated, hold)

	for _, bad := range []string{"-1s", "soon"} {
		e.mustFail(logical.ReadOperation, "changes", map[string]interface{}{"after": "0", "wait": "1s", "hold_created": bad}, "hold_created")
	}
}
