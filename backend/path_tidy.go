package backend

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// TidyResult says what one tidy pass did.
type TidyResult struct {
	TombstonesPurged  int `json:"tombstones_purged"`
	FeedEntriesPurged int `json:"feed_entries_purged"`
	ExpiredAnnounced  int `json:"expired_announced"`
	GraceRevoked      int `json:"grace_revoked"`
	OrphansRevoked    int `json:"orphans_revoked"`
	// CeilingsApplied counts keys whose creator's platform role changed.
	CeilingsApplied int `json:"ceilings_applied"`
	// Republished counts written changes whose publish had failed.
	Republished int `json:"republished"`
}

func pathTidy(b *Backend) []*framework.Path {
	return []*framework.Path{{
		Pattern:      "tidy",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: "apikeys", OperationVerb: "tidy"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{Callback: b.pathTidyWrite},
			logical.ReadOperation:   &framework.PathOperation{Callback: b.pathTidyRead},
		},
		HelpSynopsis: "Start the periodic housekeeping now, in the background (the active node also runs it every minute); read it for the last run.",
		HelpDescription: "Writing starts a run and returns at once (run, started_at); if a run is already going, it answers that one (started=false). " +
			"A run revokes rotated-out keys whose grace ended and keys whose creating entity was deleted, caps keys whose creator's platform role changed, announces expired keys on the change feed, " +
			"publishes any written change whose publish had failed, and removes tombstones older than tombstone_retention and feed entries older than feed_retention. " +
			"Reading answers running (and running_since) and the last finished run on this node: run, trigger, started_at, finished_at, the counts, and error if it failed. " +
			"Runs only where writes are safe (not on standbys or performance secondaries).",
	}}
}

func (b *Backend) pathTidyWrite(_ context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if !b.writeSafe() { // like the periodic job: skipped, not an error
		resp := &logical.Response{Data: map[string]interface{}{"started": false, "running": false}}
		resp.AddWarning("tidy was not started: it runs only where writes are safe (the active node, not a performance secondary)")
		return resp, nil
	}
	run, started := b.startTidy(req.Storage)
	if run == nil {
		return nil, fmt.Errorf("the backend is shutting down")
	}
	data := run.data(false)
	data["started"], data["running"] = started, true
	resp := &logical.Response{Data: data}
	if !started {
		resp.AddWarning(fmt.Sprintf("tidy run %d (started %s) is still running: read apikeys/tidy for its result", run.Run, data["started_at"]))
	}
	return resp, nil
}

func (b *Backend) pathTidyRead(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return &logical.Response{Data: b.tidyStatus()}, nil
}

// tidy is one pass, shared by the periodic job and background runs of the
// tidy path (tidy_run.go).
// A full pass (the tidy path) examines every creator; the periodic job a
// bounded share of them per run (creatorBudget).
func (b *Backend) tidy(ctx context.Context, s logical.Storage, full bool) (TidyResult, error) {
	b.tidyMu.Lock() // one pass at a time: the periodic job and the path may overlap
	defer b.tidyMu.Unlock()
	var res TidyResult
	cfg, err := b.loadConfig(ctx, s)
	if err != nil || cfg == nil {
		return res, err
	}
	// Repair first: a revocation whose publish failed must not wait behind the rest.
	if res.Republished, err = b.republish(ctx, s); err != nil {
		return res, err
	}
	if res.ExpiredAnnounced, res.GraceRevoked, err = b.processExpiries(ctx, s); err != nil {
		return res, err
	}
	budget := creatorBudget
	if full {
		budget = 0
	}
	creators, err := b.checkCreators(ctx, s, cfg, budget)
	res.OrphansRevoked, res.CeilingsApplied = creators.orphansRevoked, creators.ceilingsMoved
	if err != nil {
		return res, err
	}
	now := b.now()
	if res.TombstonesPurged, err = b.purgeTombstones(ctx, s, now.Add(-cfg.TombstoneRetention).Unix()); err != nil {
		return res, err
	}
	if res.FeedEntriesPurged, err = b.feed.Purge(ctx, s, now.Add(-cfg.FeedRetention)); err != nil {
		return res, fmt.Errorf("purge change feed: %w", err)
	}
	return res, nil
}

// purgeTombstones deletes revoked records revoked before cutoff (unix seconds).
// tomb/ keys sort by revocation time, so it stops at the first younger one.
func (b *Backend) purgeTombstones(ctx context.Context, s logical.Storage, cutoff int64) (int, error) {
	keys, err := s.List(ctx, storageTombPrefix)
	if err != nil {
		return 0, fmt.Errorf("list tombstones: %w", err)
	}
	purged := 0
	for _, k := range keys {
		at, keyID, ok := strings.Cut(k, "-")
		secs, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil {
			continue
		}
		if secs >= cutoff {
			break
		}
		for _, key := range []string{storageKeyPrefix + keyID, storageUsage + keyID, storageTombPrefix + k} {
			if err := s.Delete(ctx, key); err != nil {
				return purged, fmt.Errorf("purge tombstone %s: %w", keyID, err)
			}
		}
		b.records.Remove(keyID)
		b.usage.Remove(keyID)
		purged++
	}
	return purged, nil
}
