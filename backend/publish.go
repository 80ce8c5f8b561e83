package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// Publishing. Every change to a key or a role reaches the change feed through
// this file, and only after the change itself is written (DESIGN §4: plugin
// storage has no transactions, and publishing first would let a verifier
// re-cache the old record after its eviction).
//
// A change is marked unpublished in storage before it is written and unmarked
// once its feed entry is stored. When the append fails (a storage error, lost
// leadership) the mark stays, and the next retry of the same mutation or the
// repair pass (periodic job and tidy) publishes what was written. Publishing is
// therefore at least once: a duplicate entry only makes verifiers re-read the
// record, which is the truth.

const (
	storageUnpublishedPrefix = "unpublished/"
	storageUnpublishedKey    = storageUnpublishedPrefix + "key/"
)

// unpublishedMark is the stored mark of a change not yet on the feed. The op is
// informative: a repair publishes what the record or role says now.
type unpublishedMark struct {
	Op string `json:"op"`
}

// keyChange is one record's change within a mutation.
type keyChange struct {
	rec *Record
	op  string
}

// event is a plugin event sent once the mutation is published.
type event struct {
	kind string
	kv   []string
}

// commitKeys is the one place that orders a key mutation: mark each change
// unpublished (creates share a batch mark, marks.go), write (records, names,
// indexes: the caller's write), publish each change on the feed and unmark it,
// then send the events. It returns the seq of the last feed entry (0 when
// changes is empty). The caller holds the name lock of every record in changes.
func (b *Backend) commitKeys(ctx context.Context, s logical.Storage, changes []keyChange, write func(context.Context) error, events ...event) (seq uint64, err error) {
	// A client that disconnects must not leave a written change unpublished.
	ctx = context.WithoutCancel(ctx)
	var created []string
	for _, c := range changes {
		c.rec.LastOp = c.op
		if c.op == wire.OpCreated {
			created = append(created, c.rec.KeyID)
			continue
		}
		if err := putJSON(ctx, s, storageUnpublishedKey+c.rec.KeyID, unpublishedMark{Op: c.op}); err != nil {
			return 0, err
		}
	}
	published := false // rather than err == nil: a panic unwinds with err nil
	if len(created) > 0 {
		batch, merr := b.createMarks.mark(ctx, s, created)
		if merr != nil {
			return 0, merr
		}
		defer func() { b.createMarks.settle(ctx, s, batch, created, !published, b.logger.Warn) }()
	}
	if err := write(ctx); err != nil {
		return 0, err
	}
	for _, c := range changes {
		if c.op == wire.OpCreated {
			seq, err = b.appendKey(ctx, s, c.rec)
		} else {
			seq, err = b.publishKey(ctx, s, c.rec)
		}
		if err != nil {
			return 0, err
		}
	}
	published = true
	for _, ev := range events {
		b.sendEvent(ctx, ev.kind, ev.kv...)
	}
	return seq, nil
}

// appendKey appends the record's last change to the feed.
func (b *Backend) appendKey(ctx context.Context, s logical.Storage, rec *Record) (uint64, error) {
	return b.feed.Append(ctx, s, wire.Change{KeyID: rec.KeyID, Role: rec.Role, Tenant: rec.Tenant, Op: lastOp(rec)}, b.now())
}

// publishKey appends the record's last change to the feed and drops its mark.
func (b *Backend) publishKey(ctx context.Context, s logical.Storage, rec *Record) (uint64, error) {
	seq, err := b.appendKey(ctx, s, rec)
	if err != nil {
		return 0, err
	}
	if err := s.Delete(ctx, storageUnpublishedKey+rec.KeyID); err != nil {
		// Published already; a stale mark only costs a duplicate entry later.
		b.logger.Warn("drop publish mark", "key_id", rec.KeyID, "error", err)
	}
	return seq, nil
}

// lastOp is the feed op of the record's newest change; records written before
// LastOp existed say it through their status.
func lastOp(rec *Record) string {
	switch {
	case rec.LastOp != "":
		return rec.LastOp
	case rec.Status == wire.StatusRevoked:
		return wire.OpRevoked
	case rec.Status == wire.StatusDisabled:
		return wire.OpDisabled
	}
	return wire.OpUpdated
}

// republishKey publishes the record's last change if it is still marked
// unpublished: the retry of a mutation that finds its work already written.
// The caller holds the record's name lock. It returns 0 when nothing was due.
func (b *Backend) republishKey(ctx context.Context, s logical.Storage, rec *Record) (uint64, error) {
	var mark unpublishedMark
	due, err := getJSON(ctx, s, storageUnpublishedKey+rec.KeyID, &mark)
	if err != nil || !due {
		return 0, err
	}
	ctx = context.WithoutCancel(ctx)
	seq, err := b.publishKey(ctx, s, rec)
	if err != nil {
		return 0, err
	}
	b.logger.Warn("published a key change whose publish had failed", "key_id", rec.KeyID, "op", lastOp(rec), "seq", seq)
	b.sendKeyEvent(ctx, lastOp(rec), rec)
	return seq, nil
}

// scope is what a change that names no key is about: a role, a tenant's
// settings, or a tenant's allow-list. Verifiers drop every key it covers.
type scope struct {
	kind   string // scopeRole, scopeTenant or scopeAllowlist
	tenant string // tenant and allow-list scopes
	name   string // the role or the allow-list
}

const (
	scopeRole      = "role"
	scopeTenant    = "tenant"
	scopeAllowlist = "allowlist"
)

func roleScope(name string) scope     { return scope{kind: scopeRole, name: name} }
func tenantScope(tenant string) scope { return scope{kind: scopeTenant, tenant: tenant} }
func allowlistScope(tenant, name string) scope {
	return scope{kind: scopeAllowlist, tenant: tenant, name: name}
}

// markKey is where the scope's unpublished mark is stored: one flat level per
// kind, so the repair pass lists each kind once (':' never appears in a name).
func (sc scope) markKey() string {
	switch sc.kind {
	case scopeRole:
		return storageUnpublishedPrefix + scopeRole + "/" + sc.name
	case scopeTenant:
		return storageUnpublishedPrefix + scopeTenant + "/" + sc.tenant
	}
	return storageUnpublishedPrefix + scopeAllowlist + "/" + sc.tenant + ":" + sc.name
}

// scopeFromMark is the inverse of markKey for the repair pass.
func scopeFromMark(kind, id string) scope {
	switch kind {
	case scopeRole:
		return roleScope(id)
	case scopeTenant:
		return tenantScope(id)
	}
	tenant, name, _ := strings.Cut(id, ":")
	return allowlistScope(tenant, name)
}

// change is the feed entry of op on the scope.
func (sc scope) change(op string) wire.Change {
	switch sc.kind {
	case scopeRole:
		return wire.Change{Role: sc.name, Op: op}
	case scopeTenant:
		return wire.Change{Tenant: sc.tenant, Op: op}
	}
	return wire.Change{Tenant: sc.tenant, Allowlist: sc.name, Op: op}
}

// ops are the scope's feed ops: while it exists, and once it is gone.
func (sc scope) ops() (updated, deleted string) {
	switch sc.kind {
	case scopeRole:
		return wire.OpRoleUpdated, wire.OpRoleDeleted
	case scopeTenant:
		return wire.OpTenantUpdated, wire.OpTenantDeleted
	}
	return wire.OpAllowlistUpdated, wire.OpAllowlistDeleted
}

// storageKey is where the scope itself is stored.
func (sc scope) storageKey() string {
	switch sc.kind {
	case scopeRole:
		return storageRolePrefix + sc.name
	case scopeTenant:
		return storageTenantPrefix + sc.tenant
	}
	return allowlistKey(sc.tenant, sc.name)
}

// lock is the lock writers of the scope hold exclusively.
func (b *Backend) scopeLock(sc scope) *locksutil.LockEntry {
	if sc.kind == scopeRole {
		return b.roleLock(sc.name)
	}
	return b.tenantLock(sc.tenant)
}

// eventArgs names the scope in a plugin event.
func (sc scope) eventArgs() []string {
	switch sc.kind {
	case scopeRole:
		return []string{"role", sc.name}
	case scopeTenant:
		return []string{"tenant", sc.tenant}
	}
	return []string{"tenant", sc.tenant, "allowlist", sc.name}
}

// seqAnswer is the answer of a committed role, tenant or allow-list change:
// the seq of its feed entry.
func seqAnswer(seq uint64, err error) (*logical.Response, error) {
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{"seq": seq}}, nil
}

// refuseOrRevokeKeys is the rule for deleting a role or tenant that still has
// count live keys (matching f): refused unless the request says
// revoke_keys=true, which revokes them first. A nil answer lets the delete go on.
func (b *Backend) refuseOrRevokeKeys(ctx context.Context, s logical.Storage, d *framework.FieldData, what string, count int, f ListFilter) (*logical.Response, error) {
	if count == 0 {
		return nil, nil
	}
	if !d.Get("revoke_keys").(bool) {
		return logical.ErrorResponse("%s still has %d live keys: revoke them first, or delete with revoke_keys=true to revoke them all", what, count), logical.ErrInvalidRequest
	}
	_, err := b.revokeKeysWhere(ctx, s, f)
	return nil, err
}

// commitScope writes a change of a role, tenant or allow-list and publishes
// it, in the order commitKeys keeps. Every write and delete publishes:
// verifiers drop the keys it covers and re-read them. The caller holds the
// scope's write lock (scopeLock).
func (b *Backend) commitScope(ctx context.Context, s logical.Storage, sc scope, op string, write func(context.Context) error) (uint64, error) {
	ctx = context.WithoutCancel(ctx)
	if err := putJSON(ctx, s, sc.markKey(), unpublishedMark{Op: op}); err != nil {
		return 0, err
	}
	if err := write(ctx); err != nil {
		return 0, err
	}
	seq, err := b.publishScope(ctx, s, sc, op)
	if err != nil {
		return 0, err
	}
	b.sendEvent(ctx, op, sc.eventArgs()...)
	return seq, nil
}

func (b *Backend) publishScope(ctx context.Context, s logical.Storage, sc scope, op string) (uint64, error) {
	seq, err := b.feed.Append(ctx, s, sc.change(op), b.now())
	if err != nil {
		return 0, err
	}
	if err := s.Delete(ctx, sc.markKey()); err != nil {
		b.logger.Warn("drop publish mark", "scope", sc.kind, "error", err)
	}
	return seq, nil
}

// republish is the repair pass: it publishes every change still marked
// unpublished (its append failed, or the node stopped between the write and
// the append). It runs in the periodic job and tidy, and returns how many it
// published. Creates come last: nobody holds a key whose create failed, while
// a revocation whose publish failed must not wait behind them.
func (b *Backend) republish(ctx context.Context, s logical.Storage) (int, error) {
	done := 0
	ids, err := s.List(ctx, storageUnpublishedKey)
	if err != nil {
		return 0, fmt.Errorf("list unpublished changes: %w", err)
	}
	for _, id := range ids {
		rec, err := b.getRecord(ctx, s, id)
		if err != nil {
			return done, err
		}
		if rec == nil { // purged, or the write never happened: nothing to tell
			if err := s.Delete(ctx, storageUnpublishedKey+id); err != nil {
				return done, err
			}
			continue
		}
		seq, err := b.republishLocked(ctx, s, rec)
		if err != nil {
			return done, err
		}
		if seq > 0 {
			done++
		}
	}
	for _, kind := range []string{scopeRole, scopeTenant, scopeAllowlist} {
		ids, err := s.List(ctx, storageUnpublishedPrefix+kind+"/")
		if err != nil {
			return done, fmt.Errorf("list unpublished %s changes: %w", kind, err)
		}
		for _, id := range ids {
			ok, err := b.republishScope(ctx, s, scopeFromMark(kind, id))
			if err != nil {
				return done, err
			}
			if ok {
				done++
			}
		}
	}
	created, err := b.republishCreates(ctx, s)
	return done + created, err
}

// republishLocked reads the record again under its name lock, then republishes.
func (b *Backend) republishLocked(ctx context.Context, s logical.Storage, rec *Record) (uint64, error) {
	rec, unlock, err := b.lockRecord(ctx, s, rec.KeyID)
	defer unlock()
	if err != nil || rec == nil {
		return 0, err
	}
	if seq, done, err := b.finishRevocation(ctx, s, rec); done || err != nil {
		return seq, err
	}
	if lastOp(rec) == wire.OpCreated {
		if dropped, err := b.undoUnnamedCreate(ctx, s, rec); err != nil || dropped {
			return 0, err
		}
	}
	return b.republishKey(ctx, s, rec)
}

// undoUnnamedCreate is the repair pass's rule for a record whose last change is
// its create: a create that never reached its name is undone, not announced.
// It reports whether it dropped rec. The caller holds rec's name lock.
func (b *Backend) undoUnnamedCreate(ctx context.Context, s logical.Storage, rec *Record) (bool, error) {
	dropped, err := b.dropUnnamed(ctx, s, rec)
	if dropped {
		b.logger.Warn("dropped the record of a create that failed before its name was written", "key_id", rec.KeyID)
	}
	return dropped, err
}

// finishRevocation completes a revocation whose record write failed after its
// key lost its name: a rotation with grace 0 moves the name to the new key
// before it revokes the old one. Such a record is still active, marked for a
// revocation, and named by nothing, so neither a retry nor a delete by name
// can reach it; it is revoked and published now, as the request asked. A key
// its name still holds (the mutation failed before the name moved) is left as
// it is. It reports whether it handled rec. The caller holds rec's name lock.
func (b *Backend) finishRevocation(ctx context.Context, s logical.Storage, rec *Record) (uint64, bool, error) {
	if rec.Status == wire.StatusRevoked {
		return 0, false, nil
	}
	var mark unpublishedMark
	due, err := getJSON(ctx, s, storageUnpublishedKey+rec.KeyID, &mark)
	if err != nil || !due || mark.Op != wire.OpRevoked {
		return 0, false, err
	}
	if named, err := b.named(ctx, s, rec); err != nil || named {
		return 0, false, err
	}
	markRevoked(rec, b.now())
	seq, err := b.commitKeys(ctx, s, []keyChange{{rec, wire.OpRevoked}}, func(ctx context.Context) error {
		return b.writeRevoked(ctx, s, rec)
	}, revokedEvent(rec))
	if err != nil {
		return 0, true, err
	}
	b.logger.Warn("completed a revocation whose write had failed after its key lost its name", "key_id", rec.KeyID, "seq", seq)
	return seq, true, nil
}

// republishScope publishes a marked scope change as the scope stands now:
// updated while it exists, deleted once it is gone.
func (b *Backend) republishScope(ctx context.Context, s logical.Storage, sc scope) (bool, error) {
	lock := b.scopeLock(sc)
	lock.Lock()
	defer lock.Unlock()
	var mark unpublishedMark
	due, err := getJSON(ctx, s, sc.markKey(), &mark)
	if err != nil || !due {
		return false, err
	}
	entry, err := s.Get(ctx, sc.storageKey())
	if err != nil {
		return false, err
	}
	op, deleted := sc.ops()
	if entry == nil {
		op = deleted
	}
	ctx = context.WithoutCancel(ctx)
	seq, err := b.publishScope(ctx, s, sc, op)
	if err != nil {
		return false, err
	}
	b.logger.Warn("published a change whose publish had failed", "scope", sc.kind, "op", op, "seq", seq)
	b.sendEvent(ctx, op, sc.eventArgs()...)
	return true, nil
}

// sendKeyEvent emits a key's event (keyEvent) outside a commit: the repair of
// a change whose publish had failed.
func (b *Backend) sendKeyEvent(ctx context.Context, op string, rec *Record) {
	ev := keyEvent(op, rec)
	b.sendEvent(ctx, ev.kind, ev.kv...)
}

// sendEvent emits a plugin event; events are best effort and never fail a request.
func (b *Backend) sendEvent(ctx context.Context, kind string, kv ...string) {
	if err := logical.SendEvent(ctx, b, "apikeys/"+kind, kv...); err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.logger.Debug("send event", "type", kind, "error", err)
	}
}
