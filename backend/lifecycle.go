package backend

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// The key lifecycle: issue and rotate (this file); disable, enable, patch,
// revoke and expiry (lifecycle_change.go). Path files parse a request, call one
// of these, and render what it returns; every change is written, published and
// announced through commitKeys (publish.go).
//
// Locks are taken role first, then tenant, then name: a role's writers
// (update, delete) hold its lock exclusively, and issuance holds it shared from
// reading the role until the key is committed, so a key is never left live
// under a deleted role; the tenant lock does the same for a deleted tenant or
// allow-list.

// maxGrace bounds how long a rotated-out key stays valid.
const maxGrace = 7 * 24 * time.Hour

// maxInGrace bounds how many rotated-out keys one name carries at once.
const maxInGrace = 10

// keyRequest is a parsed create (or rotate) request: the caller's choices and
// the lifetime asked for, resolved against the role under its lock.
type keyRequest struct {
	KeySpec
	ttl      time.Duration
	ttlGiven bool
}

// issued is what issue and rotate return: the new record and its key (shown once).
type issued struct {
	rec      *Record
	key      token.Token
	seq      uint64
	previous *Record // rotate only: the key it replaced
}

func (b *Backend) roleLock(name string) *locksutil.LockEntry {
	return locksutil.LockForKey(b.roleLocks, name)
}

// readRole takes the role's shared lock and reads the role (nil when it does
// not exist). The caller releases the lock with the returned func.
func (b *Backend) readRole(ctx context.Context, s logical.Storage, name string) (*Role, func(), error) {
	lock := b.roleLock(name)
	lock.RLock()
	role, err := b.getRole(ctx, s, name)
	if err != nil {
		lock.RUnlock()
		return nil, nil, err
	}
	return role, lock.RUnlock, nil
}

// admit checks a request against its role and the mount, and returns the
// key's lifetime (0 = never expires).
func admit(kr *keyRequest, role *Role, cfg *Config) (time.Duration, error) {
	if kr.Workspace != "" && !wire.WorkspaceAllowed(role.AllowedWorkspaces, kr.Workspace) {
		return 0, invalid("workspace %q is not allowed by role %q (allowed: %v)", kr.Workspace, role.Name, role.AllowedWorkspaces)
	}
	return resolveTTL(kr.ttl, kr.ttlGiven, role, cfg)
}

// resolveTTL picks a key's lifetime: the request's, else the role's, else the
// mount's default, else the tightest max; 0 means never expires.
func resolveTTL(ttl time.Duration, given bool, role *Role, cfg *Config) (time.Duration, error) {
	limit := role.MaxTTL
	if cfg.MaxTTL > 0 && (limit == 0 || cfg.MaxTTL < limit) {
		limit = cfg.MaxTTL
	}
	if !given {
		for _, ttl := range []time.Duration{role.TTL, cfg.DefaultTTL, limit} {
			if ttl > 0 {
				if limit > 0 && ttl > limit {
					return limit, nil
				}
				return ttl, nil
			}
		}
		return 0, nil
	}
	switch {
	case ttl < 0:
		return 0, invalid("ttl must not be negative")
	case ttl == 0 && limit > 0:
		return 0, invalid("ttl=0 (never expires) is not allowed: role %q or the mount sets max_ttl %s; give a ttl up to that", role.Name, limit)
	case limit > 0 && ttl > limit:
		return 0, invalid("ttl %s exceeds the max_ttl %s of role %q (or the mount); ask for less", ttl, limit, role.Name)
	}
	return ttl, nil
}

// sealerOrInvalid returns the mount's sealer; a missing or broken
// configuration is the operator's to fix.
func (b *Backend) sealerOrInvalid(ctx context.Context, s logical.Storage) (Sealer, *Config, error) {
	sealer, cfg, err := b.sealerFor(ctx, s)
	if err != nil {
		return nil, nil, invalid("%s", err.Error())
	}
	return sealer, cfg, nil
}

// issue creates a key under a free name.
func (b *Backend) issue(ctx context.Context, req *logical.Request, kr *keyRequest) (*issued, error) {
	s := req.Storage
	sealer, cfg, err := b.sealerOrInvalid(ctx, s)
	if err != nil {
		return nil, err
	}
	role, unlock, err := b.readRole(ctx, s, kr.Role)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if role == nil {
		return nil, invalid("unknown role %q: create it first with `vault write apikeys/roles/%s permissions=…`", printable(kr.Role), printable(kr.Role))
	}
	ttl, err := admit(kr, role, cfg)
	if err != nil {
		return nil, err
	}
	who, creatorRole := b.creatorOf(req, cfg)
	if err := b.checkCeiling(ctx, s, creatorRole, cfg.CreatorRoleKey); err != nil {
		return nil, err
	}
	tlock := b.tenantLock(kr.Tenant)
	tlock.RLock()
	defer tlock.RUnlock()
	tenant, err := b.getTenant(ctx, s, kr.Tenant)
	if err != nil {
		return nil, err
	}
	if err := b.checkAllowlists(ctx, s, kr.Tenant, kr.Allowlists); err != nil {
		return nil, err
	}
	ref := kr.ref()
	lock := b.nameLock(ref)
	lock.Lock()
	defer lock.Unlock()

	why, err := b.index.Reserve(ctx, s, ref, role.Name, Limits{Mount: cfg.MaxKeys, Tenant: tenant.maxKeys(cfg), Role: role.MaxKeys})
	if err != nil {
		return nil, err
	}
	if why != "" {
		return nil, invalid("%s", why)
	}
	var committed *NameEntry
	defer func() { b.index.Commit(ref, committed) }()

	out, err := b.mint(ctx, sealer, cfg, kr.KeySpec, ttl, who, creatorRole)
	if err != nil {
		return nil, err
	}
	rec := out.rec
	entry := nameEntryOf(rec, nil)
	out.seq, err = b.commitKeys(ctx, s, []keyChange{{rec, wire.OpCreated}}, func(ctx context.Context) error {
		err := b.putIndexes(ctx, s, rec)
		if err == nil {
			err = b.putNamed(ctx, s, rec, entry)
		}
		if err != nil {
			// The key is never shown: no active record may outlive the failure
			// without its name. If this cleanup fails too, the repair pass
			// (republishCreate) finishes it.
			if _, derr := b.dropUnnamed(ctx, s, rec); derr != nil {
				b.logger.Warn("drop the record of a failed create (tidy retries)", "key_id", rec.KeyID, "error", derr)
			}
			return err
		}
		committed = &entry
		return nil
	}, createdEvent(rec))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// mint generates a key and builds its sealed record; nothing is stored yet.
// who and creatorRole are the issuer and its platform role (creatorOf).
func (b *Backend) mint(ctx context.Context, sealer Sealer, cfg *Config, spec KeySpec, ttl time.Duration, who Creator, creatorRole string) (*issued, error) {
	tok, err := token.Generate(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	now := b.now()
	digest := tok.Digest()
	sealed, err := sealer.Seal(ctx, envelope.AAD(cfg.MountID, tok.KeyID), digest[:])
	clear(digest[:])
	if err != nil {
		return nil, fmt.Errorf("seal key %s: %w", tok.KeyID, err)
	}
	rec := &Record{KeyID: tok.KeyID, KeySpec: spec, Status: wire.StatusActive, CreatedAt: now,
		CreatedBy: who, CreatorRole: creatorRole, Sealed: sealed}
	// A new key has no use yet: its first usage report need not read storage.
	b.usage.Set(rec.KeyID, nil)
	if ttl > 0 {
		exp := now.Add(ttl)
		rec.ExpiresAt = &exp
	}
	return &issued{rec: rec, key: tok}, nil
}

// rotate issues a new key for a live name with the same KeySpec, through the
// same checks as issue; the old key stays valid for grace, or is revoked at
// once when grace is 0.
func (b *Backend) rotate(ctx context.Context, req *logical.Request, ref string, grace, ttl time.Duration, ttlGiven bool) (*issued, error) {
	s := req.Storage
	if grace < 0 || grace > maxGrace {
		return nil, invalid("grace must be between 0 and %s", maxGrace)
	}
	sealer, cfg, err := b.sealerOrInvalid(ctx, s)
	if err != nil {
		return nil, err
	}
	// Read the name once unlocked to learn which role to lock first.
	n, err := b.getName(ctx, s, ref)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, errNoLiveKey(ref)
	}
	lockedRole := n.Role
	role, unlock, err := b.readRole(ctx, s, lockedRole)
	if err != nil {
		return nil, err
	}
	defer unlock()
	n, old, unlockName, err := b.lockLiveKey(ctx, s, ref)
	if err != nil {
		return nil, err
	}
	defer unlockName()
	now := b.now()
	switch {
	case n.Role != lockedRole:
		return nil, invalid("key %s changed while it was being rotated: try again", describeRef(ref))
	case old.status(now) != wire.StatusActive:
		return nil, invalid("key %q is %s: only an active key can be rotated", old.Name, old.status(now))
	case grace > 0 && len(n.Previous) >= maxInGrace:
		return nil, invalid("key %q already has %d keys in rotation grace: revoke them (vault write apikeys/tenants/%s/revoke key_id=…) or rotate with grace=0", old.Name, len(n.Previous), old.Tenant)
	case role == nil:
		return nil, invalid("role %q of key %q no longer exists: issue a new key under another role", old.Role, old.Name)
	}
	kr := &keyRequest{KeySpec: old.KeySpec, ttl: ttl, ttlGiven: ttlGiven}
	life, err := admit(kr, role, cfg)
	if err != nil {
		return nil, err
	}
	who, creatorRole := b.creatorOf(req, cfg)
	if err := b.checkCeiling(ctx, s, creatorRole, cfg.CreatorRoleKey); err != nil {
		return nil, err
	}
	out, err := b.mint(ctx, sealer, cfg, kr.KeySpec, life, who, creatorRole)
	if err != nil {
		return nil, err
	}
	rec := out.rec
	out.previous = old
	previous := slices.Clone(n.Previous)
	oldOp := wire.OpRevoked
	events := []event{}
	if grace > 0 {
		until := now.Add(grace)
		old.GraceUntil, old.RotatedTo = &until, rec.KeyID
		if old.ExpiresAt == nil || until.Before(*old.ExpiresAt) {
			old.ExpiresAt = &until
		}
		previous = append(previous, old.KeyID)
		oldOp = wire.OpRotated
	} else {
		markRevoked(old, now)
		events = append(events, revokedEvent(old))
	}
	events = append(events, keyEvent(wire.OpRotated, rec, "previous_key_id", old.KeyID))
	entry := nameEntryOf(rec, previous)
	out.seq, err = b.commitKeys(ctx, s, []keyChange{{old, oldOp}, {rec, wire.OpCreated}}, func(ctx context.Context) error {
		// In grace the old record is written first (with its end on the
		// expiry index); otherwise the new key is in place before the old one
		// is revoked, so a failure never leaves the name without a live key.
		if grace > 0 {
			if err := putJSON(ctx, s, expKey(*old.GraceUntil, old.KeyID), map[string]string{"key_id": old.KeyID}); err != nil {
				return err
			}
			if err := b.putRecord(ctx, s, old); err != nil {
				return err
			}
		}
		if err := b.putIndexes(ctx, s, rec); err != nil {
			return err
		}
		if err := b.putNamed(ctx, s, rec, entry); err != nil {
			return err
		}
		b.index.Set(ref, entry)
		if grace == 0 {
			return b.writeRevoked(ctx, s, old)
		}
		return nil
	}, events...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// named reports whether rec's name points at it, as its current key or as a
// rotated-out key still in grace.
func (b *Backend) named(ctx context.Context, s logical.Storage, rec *Record) (bool, error) {
	n, err := b.getName(ctx, s, rec.ref())
	if err != nil || n == nil {
		return false, err
	}
	return n.KeyID == rec.KeyID || slices.Contains(n.Previous, rec.KeyID), nil
}

// dropUnnamed deletes a created record its name never came to point at (the
// create or rotate failed after writing it, so its key was never shown), with
// its index entries and its publish mark, and reports whether it did. A record
// the name does point at, or whose name cannot be read, is kept: a write that
// reported failure may still have landed. The caller holds the name lock.
func (b *Backend) dropUnnamed(ctx context.Context, s logical.Storage, rec *Record) (bool, error) {
	if named, err := b.named(ctx, s, rec); err != nil || named {
		return false, err
	}
	var keys []string
	if rec.ExpiresAt != nil {
		keys = append(keys, expKey(*rec.ExpiresAt, rec.KeyID))
	}
	if rec.CreatedBy.EntityID != "" {
		keys = append(keys, ownerKey(rec.CreatedBy.EntityID, rec.KeyID))
	}
	// The mark goes last: while it stays, the repair pass comes back here.
	keys = append(keys, storageKeyPrefix+rec.KeyID, storageUnpublishedKey+rec.KeyID)
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			return false, fmt.Errorf("drop unfinished key %s: %w", rec.KeyID, err)
		}
		if k == storageKeyPrefix+rec.KeyID {
			b.records.Remove(rec.KeyID)
		}
	}
	return true, nil
}
