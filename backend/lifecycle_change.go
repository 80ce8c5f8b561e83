package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Changes to issued keys: disable, enable, patch, revoke and expiry. What is
// done to a name applies to every key of it, the current one and those still
// in rotation grace (DESIGN §4).

func errNoLiveKey(ref string) error {
	tenant, _ := splitRef(ref)
	return invalid("no live key named %s (list keys with `vault list apikeys/tenants/%s/keys`)", describeRef(ref), printable(tenant))
}

// lockLiveKey takes the lock of ref (tenant/name) and reads its entry and
// current record. The caller releases the lock with the returned func.
func (b *Backend) lockLiveKey(ctx context.Context, s logical.Storage, ref string) (*NameEntry, *Record, func(), error) {
	lock := b.nameLock(ref)
	lock.Lock()
	n, err := b.getName(ctx, s, ref)
	if err == nil && n == nil {
		err = errNoLiveKey(ref)
	}
	if err != nil {
		lock.Unlock()
		return nil, nil, nil, err
	}
	rec, err := b.getRecord(ctx, s, n.KeyID)
	if err == nil && rec == nil {
		err = fmt.Errorf("key %s: name entry without record %s", ref, n.KeyID)
	}
	if err != nil {
		lock.Unlock()
		return nil, nil, nil, err
	}
	return n, rec, lock.Unlock, nil
}

// nameRecords reads every key of a name: the current one, then those in grace.
func (b *Backend) nameRecords(ctx context.Context, s logical.Storage, n *NameEntry) ([]*Record, error) {
	var out []*Record
	for _, id := range append([]string{n.KeyID}, n.Previous...) {
		rec, err := b.getRecord(ctx, s, id)
		if err != nil {
			return nil, err
		}
		if rec != nil {
			out = append(out, rec)
		}
	}
	return out, nil
}

// seqOrHead is seq, or the feed head when a mutation had nothing to publish
// (already in the state asked for): every change that led there is at or
// before the head.
func (b *Backend) seqOrHead(ctx context.Context, s logical.Storage, seq uint64) (uint64, error) {
	if seq > 0 {
		return seq, nil
	}
	return b.feed.Head(ctx, s)
}

// statusChanged is what disable and enable return.
type statusChanged struct {
	name, keyID, status string
	seq                 uint64
}

// setStatus disables or enables every key of a name. A key already in that
// state changes nothing, but a change of it that never reached the feed is
// published now (the retry of a request whose publish failed).
func (b *Backend) setStatus(ctx context.Context, s logical.Storage, ref, status, op string) (*statusChanged, error) {
	n, cur, unlock, err := b.lockLiveKey(ctx, s, ref)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := b.now()
	if cur.status(now) == wire.StatusExpired {
		return nil, invalid("key %s has expired: issue a new one instead", describeRef(ref))
	}
	recs, err := b.nameRecords(ctx, s, n)
	if err != nil {
		return nil, err
	}
	var seq uint64
	var changes []keyChange
	var events []event
	for _, rec := range recs {
		if st := rec.status(now); st == wire.StatusRevoked || st == wire.StatusExpired {
			continue // a key in grace that ended: the job revokes it
		}
		if rec.Status == status {
			republished, err := b.republishKey(ctx, s, rec)
			if err != nil {
				return nil, err
			}
			seq = max(seq, republished)
			continue
		}
		rec.Status = status
		changes = append(changes, keyChange{rec, op})
		events = append(events, keyEvent(op, rec))
	}
	published, err := b.commitKeys(ctx, s, changes, func(ctx context.Context) error {
		return b.writeNameRecords(ctx, s, ref, n, cur.KeyID, changes)
	}, events...)
	if err != nil {
		return nil, err
	}
	if seq, err = b.seqOrHead(ctx, s, max(seq, published)); err != nil {
		return nil, err
	}
	return &statusChanged{name: cur.Name, keyID: cur.KeyID, status: status, seq: seq}, nil
}

// writeNameRecords writes the changed records of a name (ref); the current
// key's (currentID) together with its name entry, which repeats status,
// description and allow-lists for listing and filters. The caller holds the
// name lock.
func (b *Backend) writeNameRecords(ctx context.Context, s logical.Storage, ref string, n *NameEntry, currentID string, changes []keyChange) error {
	for _, c := range changes {
		if c.rec.KeyID != currentID {
			if err := b.putRecord(ctx, s, c.rec); err != nil {
				return err
			}
			continue
		}
		entry := nameEntryOf(c.rec, n.Previous)
		if err := b.putNamed(ctx, s, c.rec, entry); err != nil {
			return err
		}
		b.index.Set(ref, entry)
	}
	return nil
}

// keyPatch holds the fields `vault patch` may change; nil means unchanged.
type keyPatch struct {
	description *string
	metadata    *map[string]string
	cidrs       *[]string
	allowlists  *[]string
}

func (p keyPatch) apply(spec *KeySpec) {
	if p.description != nil {
		spec.Description = *p.description
	}
	if p.metadata != nil {
		spec.Metadata = *p.metadata
	}
	if p.cidrs != nil {
		spec.AllowedCIDRs = *p.cidrs
	}
	if p.allowlists != nil {
		spec.Allowlists = *p.allowlists
	}
}

// patch changes every live key of a name and returns the current one. It
// holds the tenant lock shared: the allow-lists it names stay while it runs.
func (b *Backend) patch(ctx context.Context, s logical.Storage, ref string, p keyPatch) (*Record, uint64, error) {
	tenant, _ := splitRef(ref)
	tlock := b.tenantLock(tenant)
	tlock.RLock()
	defer tlock.RUnlock()
	if p.allowlists != nil {
		if err := b.checkAllowlists(ctx, s, tenant, *p.allowlists); err != nil {
			return nil, 0, err
		}
	}
	n, cur, unlock, err := b.lockLiveKey(ctx, s, ref)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	recs, err := b.nameRecords(ctx, s, n)
	if err != nil {
		return nil, 0, err
	}
	var changes []keyChange
	var events []event
	for _, rec := range recs {
		if rec.Status == wire.StatusRevoked {
			continue
		}
		p.apply(&rec.KeySpec)
		if rec.KeyID == cur.KeyID {
			cur = rec // render the patched copy
		}
		changes = append(changes, keyChange{rec, wire.OpUpdated})
		events = append(events, keyEvent(wire.OpUpdated, rec))
	}
	seq, err := b.commitKeys(ctx, s, changes, func(ctx context.Context) error {
		return b.writeNameRecords(ctx, s, ref, n, cur.KeyID, changes)
	}, events...)
	if err != nil {
		return nil, 0, err
	}
	return cur, seq, nil
}

// revoked is what a revocation returns.
type revoked struct {
	rec     *Record // the key asked for (by id), or the name's current key
	seq     uint64
	already bool // it was revoked before this request
}

// revokeName revokes every key of a name (ref: tenant/name) and frees the
// name. The caller holds the name lock.
func (b *Backend) revokeName(ctx context.Context, s logical.Storage, ref string, n *NameEntry) (uint64, error) {
	recs, err := b.nameRecords(ctx, s, n)
	if err != nil {
		return 0, err
	}
	now := b.now()
	var seq uint64
	var changes []keyChange
	var events []event
	for _, rec := range recs {
		if rec.Status == wire.StatusRevoked {
			republished, err := b.republishKey(ctx, s, rec)
			if err != nil {
				return 0, err
			}
			seq = max(seq, republished)
			continue
		}
		markRevoked(rec, now)
		changes = append(changes, keyChange{rec, wire.OpRevoked})
		events = append(events, revokedEvent(rec))
	}
	published, err := b.commitKeys(ctx, s, changes, func(ctx context.Context) error {
		for _, c := range changes {
			if err := b.writeRevoked(ctx, s, c.rec); err != nil {
				return err
			}
		}
		return nil
	}, events...)
	if err != nil {
		return 0, err
	}
	// The name is freed only once its keys are published, so a retry of a
	// failed delete still finds them.
	if err := s.Delete(ctx, storageNamePrefix+ref); err != nil {
		return 0, fmt.Errorf("free name %s: %w", ref, err)
	}
	b.index.Remove(ref)
	return b.seqOrHead(ctx, s, max(seq, published))
}

// revokeLiveName revokes a name by its name (`vault delete tenants/<t>/keys/<name>`).
func (b *Backend) revokeLiveName(ctx context.Context, s logical.Storage, ref string) (*revoked, error) {
	n, cur, unlock, err := b.lockLiveKey(ctx, s, ref)
	var missing *inputError
	if errors.As(err, &missing) {
		tenant, _ := splitRef(ref)
		return nil, invalid("no live key named %s: nothing was revoked (list keys with `vault list apikeys/tenants/%s/keys`)", describeRef(ref), printable(tenant))
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	seq, err := b.revokeName(ctx, s, ref, n)
	if err != nil {
		return nil, err
	}
	return &revoked{rec: cur, seq: seq}, nil
}

// revokeID revokes one key_id wherever it stands: the current key of its name
// (which revokes the name and frees it) or a rotated-out key in grace. With
// tenant set, a key of another tenant is no key at all: an error that says
// nothing of it and changes nothing.
func (b *Backend) revokeID(ctx context.Context, s logical.Storage, tenant, keyID string) (*revoked, error) {
	rec, unlock, err := b.lockRecord(ctx, s, keyID)
	defer unlock()
	if err != nil {
		return nil, err
	}
	if rec == nil || (tenant != "" && rec.Tenant != tenant) {
		where := "on this mount"
		if tenant != "" {
			where = fmt.Sprintf("in tenant %q", printable(tenant))
		}
		return nil, invalid("no key with key_id %s %s: nothing was revoked", keyID, where)
	}
	if rec.Status == wire.StatusRevoked {
		seq, err := b.republishKey(ctx, s, rec)
		if err == nil {
			seq, err = b.seqOrHead(ctx, s, seq)
		}
		return &revoked{rec: rec, seq: seq, already: true}, err
	}
	n, err := b.getName(ctx, s, rec.ref())
	if err != nil {
		return nil, err
	}
	if n != nil && n.KeyID == rec.KeyID {
		seq, err := b.revokeName(ctx, s, rec.ref(), n)
		return &revoked{rec: rec, seq: seq}, err
	}
	markRevoked(rec, b.now())
	seq, err := b.commitKeys(ctx, s, []keyChange{{rec, wire.OpRevoked}}, func(ctx context.Context) error {
		if err := b.writeRevoked(ctx, s, rec); err != nil {
			return err
		}
		return b.dropPrevious(ctx, s, rec.ref(), n, rec.KeyID)
	}, revokedEvent(rec))
	return &revoked{rec: rec, seq: seq}, err
}

// revokeKeyID revokes a record's key_id (for the periodic jobs).
func (b *Backend) revokeKeyID(ctx context.Context, s logical.Storage, rec *Record) error {
	_, err := b.revokeID(ctx, s, "", rec.KeyID)
	return err
}

// revokeKeysWhere revokes every live key the filter selects (role or tenant
// delete with revoke_keys). The caller holds the role's or tenant's write
// lock, so no such key is issued meanwhile. It returns the seq of the last
// revocation.
func (b *Backend) revokeKeysWhere(ctx context.Context, s logical.Storage, f ListFilter) (uint64, error) {
	var last uint64
	f.Limit = 500
	for {
		refs, entries, _, err := b.index.Page(ctx, s, f)
		if err != nil || len(refs) == 0 {
			return last, err
		}
		for _, ref := range refs {
			n := entries[ref]
			lock := b.nameLock(ref)
			lock.Lock()
			seq, err := b.revokeName(ctx, s, ref, &n)
			lock.Unlock()
			if err != nil {
				return last, err
			}
			last = max(last, seq)
		}
	}
}

func markRevoked(rec *Record, now time.Time) {
	rec.Status, rec.RevokedAt = wire.StatusRevoked, &now
}

// keyEvent is the one shape of a key's event: apikeys/key-<op>, naming the
// key, its tenant, name and role, then any pairs of extra fields.
func keyEvent(op string, rec *Record, extra ...string) event {
	return event{"key-" + op, append([]string{"key_id", rec.KeyID, "tenant", rec.Tenant, "name", rec.Name, "role", rec.Role}, extra...)}
}

func createdEvent(rec *Record) event { return keyEvent(wire.OpCreated, rec) }

func revokedEvent(rec *Record) event { return keyEvent(wire.OpRevoked, rec) }

// writeRevoked stores a revoked record as its own tombstone, indexed by
// revocation time for tidy, and drops it from its creator's index.
func (b *Backend) writeRevoked(ctx context.Context, s logical.Storage, rec *Record) error {
	if err := b.putRecord(ctx, s, rec); err != nil {
		return err
	}
	if err := putJSON(ctx, s, tombKey(*rec.RevokedAt, rec.KeyID), map[string]string{"key_id": rec.KeyID}); err != nil {
		return err
	}
	if rec.CreatedBy.EntityID != "" {
		if err := s.Delete(ctx, ownerKey(rec.CreatedBy.EntityID, rec.KeyID)); err != nil {
			return fmt.Errorf("drop owner index of %s: %w", rec.KeyID, err)
		}
	}
	return nil
}

// dropPrevious removes a rotated-out key_id from its name's (ref's) grace
// list. The caller holds the name lock.
func (b *Backend) dropPrevious(ctx context.Context, s logical.Storage, ref string, n *NameEntry, keyID string) error {
	if n == nil {
		return nil
	}
	i := slices.Index(n.Previous, keyID)
	if i < 0 {
		return nil
	}
	n.Previous = slices.Delete(slices.Clone(n.Previous), i, i+1)
	if err := putJSON(ctx, s, storageNamePrefix+ref, n); err != nil {
		return err
	}
	b.index.Set(ref, *n)
	return nil
}

// announceExpired publishes that a key reached its expiry. Verifiers enforce
// expires_at themselves; the entry lets them drop the key at once.
func (b *Backend) announceExpired(ctx context.Context, s logical.Storage, keyID string) (bool, error) {
	rec, unlock, err := b.lockRecord(ctx, s, keyID)
	defer unlock()
	if err != nil || rec == nil {
		return false, err
	}
	if rec.Status == wire.StatusRevoked || rec.ExpiresAt == nil || b.now().Before(*rec.ExpiresAt) {
		return false, nil
	}
	_, err = b.commitKeys(ctx, s, []keyChange{{rec, wire.OpExpired}}, func(ctx context.Context) error {
		return b.putRecord(ctx, s, rec) // keeps LastOp for a repair
	}, keyEvent(wire.OpExpired, rec))
	return err == nil, err
}
