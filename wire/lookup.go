// Package wire holds the wire shapes the plugin serves to verifiers: the
// `lookup` answer, the `changes` feed and the `usage` report. The plugin writes
// them and the verifier reads them, so both import this one definition.
//
// Nothing here carries a token or a secret: a record holds only its sealed digest.
package wire

import (
	"time"

	"github.com/vault-apikeys/vault-apikeys/envelope"
)

// Status of a key as the plugin reports it.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
	StatusExpired  = "expired"
	StatusRevoked  = "revoked"
	// StatusNotFound appears only in batch answers, for ids the mount never issued
	// (or whose tombstone has been purged).
	StatusNotFound = "not_found"
)

// Feed operations.
const (
	OpCreated     = "created"
	OpRevoked     = "revoked"
	OpDisabled    = "disabled"
	OpEnabled     = "enabled"
	OpUpdated     = "updated"
	OpRotated     = "rotated"
	OpExpired     = "expired"
	OpRoleUpdated = "role-updated"
	OpRoleDeleted = "role-deleted"
	// A tenant's settings (its allowed_cidrs) changed, or it was deleted: the
	// change names the tenant and no key; verifiers drop that tenant's keys.
	OpTenantUpdated = "tenant-updated"
	OpTenantDeleted = "tenant-deleted"
	// A named allow-list of a tenant changed or was deleted: the change names the
	// tenant and the list; verifiers drop that tenant's keys.
	OpAllowlistUpdated = "allowlist-updated"
	OpAllowlistDeleted = "allowlist-deleted"
)

// MaxBatch is the most key_ids one `lookup` request (a read or a write) may ask for.
const MaxBatch = 100

// MaxUsageBatch is the most keys one `usage` write may carry: the plugin
// refuses more, and the verifier sends a larger report in writes of this size.
const MaxUsageBatch = 1000

// MaxWait caps a `changes` long-poll: Vault holds its state lock (read side)
// for the whole of every request, so seal and step-down wait for parked polls.
const MaxWait = 5 * time.Second

// MaxHoldCreated caps a `changes` read's hold_created: a new key's entry may
// come this much later.
const MaxHoldCreated = 100 * time.Millisecond

// Entry is what `lookup/<key_id>` returns (and each element of a batch).
//
// Seq is the change-feed head read *before* the record, so the entry reflects at
// least every change up to Seq. A verifier must not cache an entry when it has
// already applied an eviction for this key (or its role) with a higher sequence.
type Entry struct {
	KeyID  string `json:"key_id" mapstructure:"key_id"`
	Status string `json:"status" mapstructure:"status"`
	Name   string `json:"name,omitempty" mapstructure:"name"`
	// Tenant is the tenant the key belongs to (names are unique within it).
	Tenant    string `json:"tenant,omitempty" mapstructure:"tenant"`
	Role      string `json:"role,omitempty" mapstructure:"role"`
	Workspace string `json:"workspace,omitempty" mapstructure:"workspace"`
	// Permissions are effective: the key's own ∩ the role's current ones.
	Permissions []string `json:"permissions,omitempty" mapstructure:"permissions"`
	// AllowedWorkspaces are the role's current globs; they apply when Workspace is empty.
	AllowedWorkspaces []string `json:"allowed_workspaces,omitempty" mapstructure:"allowed_workspaces"`
	// AllowedCIDRs is the key's own list and RoleAllowedCIDRs the role's: a client
	// address must match every list that is not empty.
	AllowedCIDRs     []string `json:"allowed_cidrs,omitempty" mapstructure:"allowed_cidrs"`
	RoleAllowedCIDRs []string `json:"role_allowed_cidrs,omitempty" mapstructure:"role_allowed_cidrs"`
	// TenantAllowedCIDRs is the tenant-wide list: when not empty, a client
	// address must match it too.
	TenantAllowedCIDRs []string `json:"tenant_allowed_cidrs,omitempty" mapstructure:"tenant_allowed_cidrs"`
	// CreatorRole is the platform role of the key's creator that caps its
	// permissions ("" = no ceiling). Permissions already reflect it; it is here
	// so that a change of that role evicts the key as a change of Role does.
	CreatorRole string            `json:"creator_role,omitempty" mapstructure:"creator_role"`
	ExpiresAt   *time.Time        `json:"expires_at,omitempty" mapstructure:"expires_at"`
	Metadata    map[string]string `json:"metadata,omitempty" mapstructure:"metadata"`
	// MountID and Sealed are present for active/disabled keys: the verifier opens
	// Sealed with envelope.AAD(MountID, KeyID) and compares the digest.
	MountID string           `json:"mount_id,omitempty" mapstructure:"mount_id"`
	Sealed  *envelope.Sealed `json:"sealed,omitempty" mapstructure:"sealed"`
	Seq     uint64           `json:"seq" mapstructure:"seq"`
}

// Batch is what a `lookup` write returns: one entry per requested id, in order.
type Batch struct {
	Entries []Entry `json:"entries" mapstructure:"entries"`
	Seq     uint64  `json:"seq" mapstructure:"seq"`
}

// Change is one feed entry. KeyID is empty for role changes. ID is random per
// entry: a follower sends the ID of the entry it applied last (after_id) so the
// plugin can tell its feed from another history with the same seq (a mount
// recreated, storage restored from a backup). Empty on entries written before IDs.
type Change struct {
	Seq   uint64 `json:"seq" mapstructure:"seq"`
	ID    string `json:"id" mapstructure:"id"`
	KeyID string `json:"key_id,omitempty" mapstructure:"key_id"`
	Role  string `json:"role,omitempty" mapstructure:"role"`
	// Tenant names the tenant of a key change, and the tenant of a tenant or
	// allow-list change (which names no key).
	Tenant string `json:"tenant,omitempty" mapstructure:"tenant"`
	// Allowlist names the allow-list of an allow-list change.
	Allowlist string    `json:"allowlist,omitempty" mapstructure:"allowlist"`
	Op        string    `json:"op" mapstructure:"op"`
	Time      time.Time `json:"time" mapstructure:"time"`
}

// Changes is what `changes` returns. Reset means the follower cannot continue
// from `after`: it fell behind retention, is beyond the head, the entry at
// `after` is not `after_id`, or entries it needs are gone. The follower must
// flush everything it cached and continue from Head.
type Changes struct {
	Changes []Change `json:"changes" mapstructure:"changes"`
	Head    uint64   `json:"head" mapstructure:"head"`
	Reset   bool     `json:"reset" mapstructure:"reset"`
}

// Usage is one key's aggregated use since the last report.
type Usage struct {
	KeyID        string    `json:"key_id" mapstructure:"key_id"`
	Count        uint64    `json:"count" mapstructure:"count"`
	LastUsedAt   time.Time `json:"last_used_at" mapstructure:"last_used_at"`
	LastUsedFrom string    `json:"last_used_from,omitempty" mapstructure:"last_used_from"`
}
