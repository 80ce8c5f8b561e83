package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// The creator ceiling (YugabyteDB's rule, DESIGN §4): a key never has more
// permissions than its creator has now. A creator's platform role is the
// creator_role_key metadata of its identity entity; a key records it as
// CreatorRole when it is minted, lookups cap the key's permissions by that
// role's current ones, and the creator pass (run by the periodic job and by
// tidy) brings CreatorRole up to date when the metadata changes, publishing
// each changed key. The same pass revokes the keys of creators that are gone.

// creatorBudget bounds how many creating entities one periodic run examines
// (each costs one identity lookup, and a record walk only when its role
// changed). Runs continue where the last one stopped; a tidy run examines all.
// At 100,000 creators a change is applied within 10 runs of the job (Vault
// runs it about once a minute): the worst-case delay is about 10 minutes,
// or the next tidy.
const creatorBudget = 10000

// creatorPass is what the creator pass keeps between runs on this node.
type creatorPass struct {
	// cursor is the entity id a budgeted run continues after ("" = the start).
	cursor string
	// applied is the platform role last applied to each entity's keys; an
	// entity not in it has its keys' records read and brought up to date.
	applied map[string]string
}

// lookupEntity finds an identity entity (nil when it does not exist).
func (b *Backend) lookupEntity(entityID string) (*logical.Entity, error) {
	if b.entityInfo != nil {
		return b.entityInfo(entityID)
	}
	if b.System() == nil {
		return nil, nil
	}
	return b.System().EntityInfo(entityID)
}

// creatorOf is who issues a key with req, and the platform role that caps
// its permissions ("" = no ceiling: root or a token without an entity, or an
// entity without the metadata).
func (b *Backend) creatorOf(req *logical.Request, cfg *Config) (Creator, string) {
	c := Creator{EntityID: req.EntityID, DisplayName: req.DisplayName}
	if req.EntityID == "" {
		return c, ""
	}
	ent, err := b.lookupEntity(req.EntityID)
	if err != nil || ent == nil {
		return c, ""
	}
	if ent.Name != "" {
		c.DisplayName = ent.Name
	}
	return c, ent.Metadata[cfg.CreatorRoleKey]
}

// checkCeiling refuses a key whose creator's platform role is not a role of
// the mount: the key would be capped to nothing.
func (b *Backend) checkCeiling(ctx context.Context, s logical.Storage, creatorRole, key string) error {
	if creatorRole == "" {
		return nil
	}
	r, err := b.getRole(ctx, s, creatorRole)
	if err != nil {
		return err
	}
	if r == nil {
		return invalid("your platform role %q (identity metadata %s) is not a role of this mount: a key you issue would grant nothing; ask an operator to fix your role", printable(creatorRole), key)
	}
	return nil
}

// capPermissions caps a key's permissions by its creator's current role.
func (b *Backend) capPermissions(ctx context.Context, s logical.Storage, perms []string, creatorRole string) ([]string, error) {
	if creatorRole == "" {
		return perms, nil
	}
	r, err := b.getRole(ctx, s, creatorRole)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return []string{}, nil // metadata naming an unknown role caps to nothing
	}
	return wire.Intersect(perms, r.Permissions), nil
}

// creatorResult counts what one creator pass did.
type creatorResult struct {
	orphansRevoked int
	ceilingsMoved  int
}

// checkCreators is the creator pass over the entities that created live keys
// (owner/ index): up to budget of them (0 = all), continuing after the last
// run's cursor. For each it looks the entity up once: gone entities are
// handled by the orphan rule, present ones get their keys' ceiling updated
// when their platform role changed. Runs under tidyMu.
func (b *Backend) checkCreators(ctx context.Context, s logical.Storage, cfg *Config, budget int) (creatorResult, error) {
	var res creatorResult
	if b.entityInfo == nil && b.System() == nil {
		return res, nil
	}
	if b.creators.applied == nil {
		b.creators.applied = map[string]string{}
	}
	entities, err := s.List(ctx, storageOwnerPrefix)
	if err != nil {
		return res, fmt.Errorf("list key owners: %w", err)
	}
	start := 0
	if budget > 0 {
		for start < len(entities) && strings.TrimSuffix(entities[start], "/") <= b.creators.cursor {
			start++
		}
	}
	end := len(entities)
	if budget > 0 && start+budget < end {
		end = start + budget
	}
	now := b.now()
	for _, e := range entities[start:end] {
		entityID := strings.TrimSuffix(e, "/")
		ent, err := b.lookupEntity(entityID)
		switch {
		case err != nil:
			delete(b.orphanSince, entityID) // not a settled fact: restart the streak
		case ent == nil:
			n, err := b.orphanSeen(ctx, s, entityID, cfg.OrphanGrace, now)
			res.orphansRevoked += n
			if err != nil {
				return res, err
			}
		default:
			delete(b.orphanSince, entityID)
			n, err := b.applyCeiling(ctx, s, entityID, ent.Metadata[cfg.CreatorRoleKey])
			res.ceilingsMoved += n
			if err != nil {
				return res, err
			}
		}
	}
	if end == len(entities) {
		b.creators.cursor = ""
		if start == 0 { // a whole pass: forget entities with no keys left
			seen := make(map[string]bool, len(entities))
			for _, e := range entities {
				seen[strings.TrimSuffix(e, "/")] = true
			}
			for id := range b.orphanSince {
				if !seen[id] {
					delete(b.orphanSince, id)
				}
			}
			for id := range b.creators.applied {
				if !seen[id] {
					delete(b.creators.applied, id)
				}
			}
		}
	} else {
		b.creators.cursor = strings.TrimSuffix(entities[end-1], "/")
	}
	return res, nil
}

// orphanSeen applies the orphan rule to an entity found absent. Revocation
// is final, so "no such entity" must be a settled fact, not a moment: after
// an unseal or a leadership change Vault loads identities after periodic
// work starts, and lookups answer nothing for entities not loaded yet. So an
// entity counts as gone only when it was absent in every run for at least
// orphan_grace, and never within orphan_grace of this node starting to serve.
// An entity merged into another counts as gone: its id no longer resolves.
func (b *Backend) orphanSeen(ctx context.Context, s logical.Storage, entityID string, grace time.Duration, now time.Time) (int, error) {
	since, ok := b.orphanSince[entityID]
	if !ok {
		since = now
		b.orphanSince[entityID] = now
	}
	if now.Sub(since) < grace || now.Sub(b.startedAt) < grace {
		return 0, nil
	}
	n, err := b.revokeOwnedBy(ctx, s, entityID)
	if err == nil {
		delete(b.orphanSince, entityID)
		delete(b.creators.applied, entityID)
	}
	return n, err
}

// applyCeiling sets role as the ceiling of every live key the entity created
// whose record says otherwise, publishing each, and remembers it applied.
func (b *Backend) applyCeiling(ctx context.Context, s logical.Storage, entityID, role string) (int, error) {
	if last, ok := b.creators.applied[entityID]; ok && last == role {
		return 0, nil
	}
	ids, err := s.List(ctx, storageOwnerPrefix+entityID+"/")
	if err != nil {
		return 0, err
	}
	moved := 0
	for _, id := range ids {
		changed, err := b.setCreatorRole(ctx, s, id, role)
		if err != nil {
			return moved, err
		}
		if changed {
			moved++
		}
	}
	b.creators.applied[entityID] = role
	return moved, nil
}

// setCreatorRole updates one record's ceiling under its name lock.
func (b *Backend) setCreatorRole(ctx context.Context, s logical.Storage, keyID, role string) (bool, error) {
	rec, unlock, err := b.lockRecord(ctx, s, keyID)
	defer unlock()
	if err != nil || rec == nil || rec.Status == wire.StatusRevoked || rec.CreatorRole == role {
		return false, err
	}
	from := rec.CreatorRole
	rec.CreatorRole = role
	_, err = b.commitKeys(ctx, s, []keyChange{{rec, wire.OpUpdated}}, func(ctx context.Context) error {
		return b.putRecord(ctx, s, rec)
	}, keyEvent(wire.OpUpdated, rec))
	if err == nil {
		b.logger.Info("creator's platform role changed: key capped by the new role", "key_id", keyID, "from", from, "to", role)
	}
	return err == nil, err
}
