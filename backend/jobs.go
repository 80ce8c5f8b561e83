package backend

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// processExpiries walks exp/ up to now: rotated-out keys whose grace ended are
// revoked, and keys that expired are announced on the feed (verifiers already
// enforce expires_at themselves; the entry lets them drop the key at once).
func (b *Backend) processExpiries(ctx context.Context, s logical.Storage) (expired, graceRevoked int, err error) {
	keys, err := s.List(ctx, storageExpPrefix)
	if err != nil {
		return 0, 0, fmt.Errorf("list expiries: %w", err)
	}
	now := b.now()
	for _, k := range keys {
		at, keyID, ok := strings.Cut(k, "-")
		secs, perr := strconv.ParseInt(at, 10, 64)
		if !ok || perr != nil {
			continue
		}
		if secs > now.Unix() {
			break // sorted by time: the rest are in the future
		}
		rec, err := b.getRecord(ctx, s, keyID)
		if err != nil {
			return expired, graceRevoked, err
		}
		if rec != nil && rec.Status != wire.StatusRevoked && rec.ExpiresAt != nil && !now.Before(*rec.ExpiresAt) {
			if rec.GraceUntil != nil {
				if err := b.revokeKeyID(ctx, s, rec); err != nil {
					return expired, graceRevoked, err
				}
				graceRevoked++
			} else {
				announced, err := b.announceExpired(ctx, s, rec.KeyID)
				if err != nil {
					return expired, graceRevoked, err
				}
				if announced {
					expired++
				}
			}
		}
		if err := s.Delete(ctx, storageExpPrefix+k); err != nil {
			return expired, graceRevoked, fmt.Errorf("drop expiry entry: %w", err)
		}
	}
	return expired, graceRevoked, nil
}

// revokeOrphans revokes keys whose creating entity no longer exists.
// Revocation is final, so "no such entity" must be a settled fact, not a
// moment: after an unseal or a leadership change Vault loads identities after
// periodic work starts, and lookups answer nothing for entities not loaded yet.
// So an entity counts as gone only when it was absent in every run for at
// least orphan_grace, and never within orphan_grace of this node starting to
// serve. A lookup error, or the entity being found, restarts its streak.
// An entity merged into another counts as gone: its id no longer resolves
// (Vault answers only for the surviving entity), so keys created by the
// merged-away entity are revoked once the grace has passed.
// Runs under tidyMu.
func (b *Backend) revokeOrphans(ctx context.Context, s logical.Storage, grace time.Duration) (int, error) {
	lookup := b.entityInfo
	if lookup == nil {
		if b.System() == nil {
			return 0, nil
		}
		lookup = b.System().EntityInfo
	}
	entities, err := s.List(ctx, storageOwnerPrefix)
	if err != nil {
		return 0, fmt.Errorf("list key owners: %w", err)
	}
	now := b.now()
	seen := make(map[string]bool, len(entities))
	revoked := 0
	for _, e := range entities {
		entityID := strings.TrimSuffix(e, "/")
		seen[entityID] = true
		ent, err := lookup(entityID)
		if err != nil || ent != nil {
			delete(b.orphanSince, entityID)
			continue
		}
		since, ok := b.orphanSince[entityID]
		if !ok {
			since = now
			b.orphanSince[entityID] = now
		}
		if now.Sub(since) < grace || now.Sub(b.startedAt) < grace {
			continue
		}
		n, err := b.revokeOwnedBy(ctx, s, entityID)
		revoked += n
		if err != nil {
			return revoked, err
		}
		delete(b.orphanSince, entityID)
	}
	for id := range b.orphanSince {
		if !seen[id] {
			delete(b.orphanSince, id) // no keys left to watch
		}
	}
	return revoked, nil
}

// revokeOwnedBy revokes every live key the entity created and drops its index.
func (b *Backend) revokeOwnedBy(ctx context.Context, s logical.Storage, entityID string) (int, error) {
	ids, err := s.List(ctx, storageOwnerPrefix+entityID+"/")
	if err != nil {
		return 0, err
	}
	revoked := 0
	for _, id := range ids {
		rec, err := b.getRecord(ctx, s, id)
		if err != nil {
			return revoked, err
		}
		if rec != nil && rec.Status != wire.StatusRevoked {
			if err := b.revokeKeyID(ctx, s, rec); err != nil {
				return revoked, err
			}
			b.logger.Info("revoked key of deleted entity", "key_id", id, "entity_id", entityID)
			revoked++
		}
		if err := s.Delete(ctx, ownerKey(entityID, id)); err != nil {
			return revoked, err
		}
	}
	return revoked, nil
}
