package backend

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
