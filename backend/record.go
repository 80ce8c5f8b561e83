package backend

import (
	"context"
	"fmt"
	"strings"
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
	// Tenant and Name identify the key's name in the mount (see ref).
	Tenant       string   `json:"tenant"`
	Name         string   `json:"name"`
	Role         string   `json:"role"`
	Workspace    string   `json:"workspace,omitempty"`
	Description  string   `json:"description,omitempty"`
	Permissions  []string `json:"permissions"`
	AllowedCIDRs []string `json:"allowed_cidrs,omitempty"`
	// Allowlists names the tenant's allow-lists whose CIDRs the key's clients
	// may also come from (read when a verifier looks the key up).
	Allowlists []string          `json:"allowlists,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

// ref is the key's name in the mount: names are unique within a tenant.
func (k *KeySpec) ref() string { return refOf(k.Tenant, k.Name) }

// refOf joins a tenant and a name into the mount-wide name the index, the
// name locks and name/ storage are keyed by: "<tenant>/<name>". Neither part
// may contain '/' (validName), so it splits back unambiguously.
func refOf(tenant, name string) string { return tenant + "/" + name }

// splitRef is the inverse of refOf.
func splitRef(ref string) (tenant, name string) {
	tenant, name, _ = strings.Cut(ref, "/")
	return tenant, name
}

// describeRef names a key for messages: `"ci" in tenant "acme"`.
func describeRef(ref string) string {
	tenant, name := splitRef(ref)
	return fmt.Sprintf("%q in tenant %q", printable(name), printable(tenant))
}

// Record is one key_id's durable state, stored at key/<key_id>. A revoked record
// is its own tombstone: it keeps the sealed digest so verifiers can tell a
// revoked key from a forged one. KeySpec is embedded, so the stored JSON is flat.
type Record struct {
	KeyID string `json:"key_id"`
	KeySpec
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy Creator   `json:"created_by"`
	// CreatorRole is the platform role of the creator's entity (its
	// creator_role_key metadata) as last applied: the key's permissions are
	// capped by that role's current ones. "" = no ceiling (root, machine tokens).
	CreatorRole string     `json:"creator_role,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	// GraceUntil is set on a key replaced by rotation: it stays valid until then
	// (ExpiresAt is capped to it) and is revoked afterwards.
	GraceUntil *time.Time      `json:"grace_until,omitempty"`
	RotatedTo  string          `json:"rotated_to,omitempty"`
	Sealed     envelope.Sealed `json:"sealed"`
	// LastOp is the feed op of the newest change written to this record; a
	// repair pass republishes it when that change may not have reached the feed.
	LastOp string `json:"last_op,omitempty"`
}

// NameEntry maps a name to its live key_id (stored at name/<tenant>/<name>).
// What list rows and filters show is repeated here so that listing needs no
// record reads: role, workspace, status, expiry, creation, description and
// the allow-lists the key names (an allow-list in use cannot be deleted).
type NameEntry struct {
	KeyID       string     `json:"key_id"`
	Role        string     `json:"role"`
	Workspace   string     `json:"workspace,omitempty"`
	Status      string     `json:"status"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	CreatedBy   Creator    `json:"created_by"`
	Description string     `json:"description,omitempty"`
	Allowlists  []string   `json:"allowlists,omitempty"`
	// Previous lists key_ids replaced by rotation that are still in grace.
	Previous []string `json:"previous,omitempty"`
}

func nameEntryOf(rec *Record, previous []string) NameEntry {
	return NameEntry{KeyID: rec.KeyID, Role: rec.Role, Workspace: rec.Workspace, Status: rec.Status,
		ExpiresAt: rec.ExpiresAt, CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy,
		Description: rec.Description, Allowlists: rec.Allowlists, Previous: previous}
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
	lock := b.nameLock(rec.ref())
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

// getName reads the name entry of ref (tenant/name); nil when the name is free.
func (b *Backend) getName(ctx context.Context, s logical.Storage, ref string) (*NameEntry, error) {
	var n NameEntry
	ok, err := getJSON(ctx, s, storageNamePrefix+ref, &n)
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
	return putJSON(ctx, s, storageNamePrefix+rec.ref(), entry)
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
