package backend

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

func TestTombstonesPurgedAfterRetention(t *testing.T) {
	e := configured(t)
	clock := time.Now().UTC()
	e.b.now = func() time.Time { return clock }
	id := e.issue("a", nil)["key_id"].(string)
	e.mustOK(logical.DeleteOperation, "tenants/acme/keys/a", nil)
	assert.Equal(t, 0, toInt(e.tidy()["tombstones_purged"]))
	assert.Equal(t, "revoked", e.mustOK(logical.ReadOperation, "lookup/"+id, nil).Data["status"])
	clock = clock.Add(721 * time.Hour)
	assert.Equal(t, 1, toInt(e.tidy()["tombstones_purged"]))
	assert.Nil(t, e.mustOK(logical.ReadOperation, "lookup/"+id, nil))
}

func TestOrphanJobSkipsLiveEntities(t *testing.T) {
	e := configured(t)
	// logical.TestSystemView knows no entities; a key with no creating entity
	// is never an orphan.
	e.issue("k", nil)
	res := e.tidy()
	assert.Equal(t, 0, toInt(res["orphans_revoked"]))
	assert.Equal(t, wire.StatusActive, e.mustOK(logical.ReadOperation, "tenants/acme/keys/k", nil).Data["status"])
}

// gateStorage holds List of the unpublished-changes prefix (the first thing a
// tidy pass lists) until gate is closed or the caller's context ends.
type gateStorage struct {
	logical.Storage
	gate    chan struct{}
	entered chan struct{}
}

func (g *gateStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if prefix == storageUnpublishedCreates {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Storage.List(ctx, prefix)
}

func holdTidy(e *testEnv) *gateStorage {
	g := &gateStorage{Storage: e.s, gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	e.s = g
	return g
}

// Tidy runs in the background under the backend's context: the write returns
// while the run is held, one run goes at a time, and the run outlives the
// request that started it.
func TestTidyRunsInBackgroundOneAtATime(t *testing.T) {
	e := configured(t)
	g := holdTidy(e)
	assert.Equal(t, false, e.mustOK(logical.ReadOperation, "tidy", nil).Data["running"])

	reqCtx, cancel := context.WithCancel(context.Background())
	resp, err := e.b.HandleRequest(reqCtx, &logical.Request{Operation: logical.UpdateOperation, Path: "tidy", Storage: e.s})
	require.NoError(t, err)
	cancel() // the request is answered; its context ends
	assert.Equal(t, true, resp.Data["started"])
	assert.Equal(t, uint64(1), resp.Data["run"])
	<-g.entered

	again := e.mustOK(logical.UpdateOperation, "tidy", nil)
	assert.Equal(t, false, again.Data["started"], "one run at a time")
	assert.Equal(t, uint64(1), again.Data["run"], "answers the running one")
	assert.NotEmpty(t, again.Warnings)
	require.NoError(t, e.b.periodic(context.Background(), &logical.Request{Storage: e.s}), "the periodic job skips while a run goes")
	status := e.mustOK(logical.ReadOperation, "tidy", nil).Data
	assert.Equal(t, true, status["running"])
	assert.Equal(t, uint64(1), status["running_run"])
	assert.Nil(t, status["finished_at"], "no run has finished yet")

	close(g.gate)
	require.Eventually(t, func() bool {
		return e.mustOK(logical.ReadOperation, "tidy", nil).Data["run"] == uint64(1)
	}, 10*time.Second, time.Millisecond)
	last := e.mustOK(logical.ReadOperation, "tidy", nil).Data
	assert.Nil(t, last["error"], "the run did not use the request's (cancelled) context")
	assert.Equal(t, false, last["running"])
	assert.Equal(t, "request", last["trigger"])
	assert.NotEmpty(t, last["finished_at"])
	assert.Equal(t, 0, toInt(last["tombstones_purged"]))
	assert.Equal(t, 2, toInt(e.tidy()["run"]), "the next write starts a new run")
}

// Tearing the backend down cancels a background run and waits for it; nothing
// starts afterwards.
func TestTidyStopsAtTeardown(t *testing.T) {
	e := configured(t)
	g := holdTidy(e)
	assert.Equal(t, true, e.mustOK(logical.UpdateOperation, "tidy", nil).Data["started"])
	<-g.entered
	e.b.Cleanup(context.Background()) // returns only once the run has stopped
	last := e.b.tidyStatus()
	assert.Equal(t, false, last["running"])
	assert.Contains(t, last["error"], "context canceled")
	_, err := e.do(logical.UpdateOperation, "tidy", nil)
	assert.ErrorContains(t, err, "shutting down")
}
