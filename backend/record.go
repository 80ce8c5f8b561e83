package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

const (
	storageExpPrefix   = "exp/"
	storageOwnerPrefix = "owner/"
	storageKeyPrefix   = "key/"
	storageNamePrefix  = "name/"
	storageTombPrefix  = "tomb/"
	storageUsage       = "usage/"
)

// Creator is who issued a key.
type Creator struct {
	EntityID    string `json:"entity_id,omitempty"`
	DisplayName string `json:"display_name,omitempty"`
}

// KeySpec is what the caller chose for a key at issuance. Rotation copies it
// whole, so a field added here is carried to the new key without another edit.
type KeySpec struct {
	Name         string            `json:"name"`
	Role         string            `json:"role"`
	Workspace    string            `json:"workspace,omitempty"`
	Description  string            `json:"description,omitempty"`
	Permissions  []string          `json:"permissions"`
	AllowedCIDRs []string          `json:"allowed_cidrs,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// Record is one key_id's durable state, stored at key/<key_id>. A revoked record
// is its own tombstone: it keeps the sealed digest so verifiers can tell a
// revoked key from a forged one. KeySpec is embedded, so the stored JSON is flat.
type Record struct {
	KeyID string `json:"key_id"`
	KeySpec
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy Creator    `json:"created_by"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// GraceUntil is set on a key replaced by rotation: it stays valid until then
	// (ExpiresAt is capped to it) and is revoked afterwards.
	GraceUntil *time.Time      `json:"grace_until,omitempty"`
	RotatedTo  string          `json:"rotated_to,omitempty"`
	Sealed     envelope.Sealed `json:"sealed"`
	// LastOp is the feed op of the newest change written to this record; a
	// repair pass republishes it when that change may not have reached the feed.
	LastOp string `json:"last_op,omitempty"`
}

// NameEntry maps a name to its live key_id (stored at name/<name>). Role,
// workspace and status are repeated so listing and filters need no record reads.
type NameEntry struct {
	KeyID     string     `json:"key_id"`
	Role      string     `json:"role"`
	Workspace string     `json:"workspace,omitempty"`
	Status    string     `json:"status"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	// Previous lists key_ids replaced by rotation that are still in grace.
	Previous []string `json:"previous,omitempty"`
}

func nameEntryOf(rec *Record, previous []string) NameEntry {
	return NameEntry{KeyID: rec.KeyID, Role: rec.Role, Workspace: rec.Workspace, Status: rec.Status,
		ExpiresAt: rec.ExpiresAt, CreatedAt: rec.CreatedAt, Previous: previous}
}

// status is the entry's status at now, as Record.status.
func (n NameEntry) status(now time.Time) string {
	if n.Status == wire.StatusActive && n.ExpiresAt != nil && !now.Before(*n.ExpiresAt) {
		return wire.StatusExpired
	}
	return n.Status
}

// status is the record's status at now: an active key past its expiry is expired.
func (r *Record) status(now time.Time) string {
	if r.Status == wire.StatusActive && r.ExpiresAt != nil && !now.Before(*r.ExpiresAt) {
		return wire.StatusExpired
	}
	return r.Status
}

func getJSON(ctx context.Context, s logical.Storage, key string, out interface{}) (bool, error) {
	entry, err := s.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if entry == nil {
		return false, nil
	}
	if err := entry.DecodeJSON(out); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func putJSON(ctx context.Context, s logical.Storage, key string, v interface{}) error {
	entry, err := logical.StorageEntryJSON(key, v)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// lockRecord reads keyID's record, takes its name lock, and reads it again
// under the lock: another writer may have changed it meanwhile. rec is nil when
// there is no such record; unlock is always safe to call, once.
func (b *Backend) lockRecord(ctx context.Context, s logical.Storage, keyID string) (rec *Record, unlock func(), err error) {
	rec, err = b.getRecord(ctx, s, keyID)
	if err != nil || rec == nil {
		return nil, func() {}, err
	}
	lock := b.nameLock(rec.Name)
	lock.Lock()
	rec, err = b.getRecord(ctx, s, keyID)
	return rec, lock.Unlock, err
}

// getRecord reads a record, from the in-memory cache when it holds it. It
// returns a copy the caller may change before putRecord.
func (b *Backend) getRecord(ctx context.Context, s logical.Storage, keyID string) (*Record, error) {
	if r, ok := b.records.Get(keyID); ok {
		copied := *r
		return &copied, nil
	}
	gen := b.records.Begin(keyID)
	var r Record
	ok, err := getJSON(ctx, s, storageKeyPrefix+keyID, &r)
	if !ok {
		return nil, err
	}
	failpoint(ctx, "after-read")
	cached := r
	b.records.AddRead(keyID, &cached, gen)
	return &r, nil
}

// putRecord writes a record and, once stored, caches a copy of it.
func (b *Backend) putRecord(ctx context.Context, s logical.Storage, rec *Record) error {
	if err := putJSON(ctx, s, storageKeyPrefix+rec.KeyID, rec); err != nil {
		b.records.Remove(rec.KeyID) // unknown state: read it back next time
		return err
	}
	cached := *rec
	b.records.Set(rec.KeyID, &cached)
	return nil
}

func (b *Backend) getName(ctx context.Context, s logical.Storage, name string) (*NameEntry, error) {
	var n NameEntry
	ok, err := getJSON(ctx, s, storageNamePrefix+name, &n)
	if !ok {
		return nil, err
	}
	return &n, nil
}

// tombKey orders tombstones by revocation time so tidy reads only expired ones.
func tombKey(at time.Time, keyID string) string {
	return fmt.Sprintf("%s%020d-%s", storageTombPrefix, at.Unix(), keyID)
}

// expKey orders expiry (and grace-end) events by time for the periodic job.
func expKey(at time.Time, keyID string) string {
	return fmt.Sprintf("%s%020d-%s", storageExpPrefix, at.Unix(), keyID)
}

// ownerKey indexes keys by the entity that created them.
func ownerKey(entityID, keyID string) string {
	return storageOwnerPrefix + entityID + "/" + keyID
}

// putNamed writes a record and the name entry pointing at it.
func (b *Backend) putNamed(ctx context.Context, s logical.Storage, rec *Record, entry NameEntry) error {
	if err := b.putRecord(ctx, s, rec); err != nil {
		return err
	}
	return putJSON(ctx, s, storageNamePrefix+rec.Name, entry)
}

// putIndexes writes the expiry and owner index entries of a new record.
func (b *Backend) putIndexes(ctx context.Context, s logical.Storage, rec *Record) error {
	if rec.ExpiresAt != nil {
		if err := putJSON(ctx, s, expKey(*rec.ExpiresAt, rec.KeyID), map[string]string{"key_id": rec.KeyID}); err != nil {
			return err
		}
	}
	if rec.CreatedBy.EntityID != "" {
		if err := putJSON(ctx, s, ownerKey(rec.CreatedBy.EntityID, rec.KeyID), map[string]string{"key_id": rec.KeyID}); err != nil {
			return err
		}
	}
	return nil
}
