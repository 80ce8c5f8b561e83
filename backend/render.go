package backend

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
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

// responseData renders a flat wire struct as the Data of a logical.Response on
// a hot path (lookup, changes): each field under its JSON name, holding the
// field's own typed value, and omitempty fields left out when empty, as
// encoding/json does. The SDK sends Data to Vault as JSON, so that encoding
// walks typed values instead of a generic map built for it first; Vault
// decodes Data from that JSON, so clients get what structToMap's map gives.
func responseData(v interface{}) map[string]interface{} {
	rv := reflect.Indirect(reflect.ValueOf(v))
	rt := rv.Type()
	out := make(map[string]interface{}, rt.NumField())
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		if f.Anonymous {
			panic("responseData: embedded field in " + rt.Name()) // only flat wire structs come here
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fv := rv.Field(i)
		if hasOption(opts, "omitempty") && emptyJSON(fv) {
			continue
		}
		out[name] = fv.Interface()
	}
	return out
}

// hasOption reports whether a json tag's options (after the name) list opt,
// without allocating: responseData asks it for every field of every answer.
func hasOption(opts, opt string) bool {
	for o := range strings.SplitSeq(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// emptyJSON is encoding/json's test for leaving out an omitempty field.
func emptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
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
