package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-apikeys/vault-apikeys/wire"
)

// What responses are made of: errors the caller can fix, and the record view.

// inputError is a mistake the caller can fix: rendered as a 400 with its
// message, which never quotes a secret.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func invalid(format string, args ...interface{}) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// badRequest renders an operator mistake as a clean 400.
func badRequest(err error) (*logical.Response, error) {
	return logical.ErrorResponse(err.Error()), logical.ErrInvalidRequest
}

// failed renders a lifecycle error: the caller's mistakes as a 400, the rest
// as Vault's 500.
func failed(err error) (*logical.Response, error) {
	var ie *inputError
	if errors.As(err, &ie) {
		return badRequest(err)
	}
	return nil, err
}

// recordView is what read, list and create show: never the key or its digest.
func recordView(rec *Record, u *wire.Usage, now time.Time) map[string]interface{} {
	data := map[string]interface{}{
		"name":          rec.Name,
		"tenant":        rec.Tenant,
		"key_id":        rec.KeyID,
		"role":          rec.Role,
		"workspace":     rec.Workspace,
		"permissions":   rec.Permissions,
		"allowed_cidrs": nonNil(rec.AllowedCIDRs),
		"allowlists":    nonNil(rec.Allowlists),
		"creator_role":  rec.CreatorRole,
		"description":   rec.Description,
		"status":        rec.status(now),
		"created_at":    rec.CreatedAt.Format(time.RFC3339),
		"created_by":    map[string]interface{}{"entity_id": rec.CreatedBy.EntityID, "display_name": rec.CreatedBy.DisplayName},
		"expires_at":    formatTime(rec.ExpiresAt),
		"metadata":      nonNilMap(rec.Metadata),
	}
	addUsage(data, u)
	return data
}

// addUsage sets the usage fields of a view (zero and empty when never used).
func addUsage(data map[string]interface{}, u *wire.Usage) {
	data["use_count"], data["last_used_at"], data["last_used_from"] = uint64(0), "", ""
	if u != nil {
		data["use_count"] = u.Count
		data["last_used_at"] = u.LastUsedAt.Format(time.RFC3339)
		data["last_used_from"] = u.LastUsedFrom
	}
}

func formatTime(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.Format(time.RFC3339)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// structToMap renders a wire struct as the map a logical.Response carries, with
// the same field names its JSON tags give it (numbers kept exact).
func structToMap(v interface{}) map[string]interface{} {
	raw, err := json.Marshal(v)
	if err != nil {
		panic("marshal wire struct: " + err.Error()) // only our own types come here
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]interface{}
	if err := dec.Decode(&out); err != nil {
		panic("unmarshal wire struct: " + err.Error())
	}
	return out
}
