package verdict

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusRule(t *testing.T) {
	want := map[Code]int{
		Valid:                   http.StatusOK,
		InvalidFormat:           http.StatusUnauthorized,
		NotFound:                http.StatusUnauthorized,
		Revoked:                 http.StatusUnauthorized,
		Disabled:                http.StatusUnauthorized,
		Expired:                 http.StatusUnauthorized,
		IPNotAllowed:            http.StatusForbidden,
		TenantMismatch:          http.StatusForbidden,
		WorkspaceMismatch:       http.StatusForbidden,
		InsufficientPermissions: http.StatusForbidden,
	}
	require.Len(t, Codes(), len(want), "a new code needs its status decided here")
	for _, c := range Codes() {
		s, ok := want[c]
		require.True(t, ok, "%s has no expected status", c)
		assert.Equal(t, s, c.Status(), c)
		assert.Equal(t, s == http.StatusForbidden, c.Forbidden(), c)
		assert.True(t, c.Known(), c)
	}
	for _, c := range []Code{"", "valid", "SOMETHING_NEW"} {
		assert.False(t, c.Known(), c)
		assert.Equal(t, http.StatusUnauthorized, c.Status(), "an unknown code %q is denied", c)
	}
}

func TestCodesIsACopy(t *testing.T) {
	c := Codes()
	c[0] = "MUTATED"
	assert.Equal(t, Valid, Codes()[0])
}

func TestTokenFromHeader(t *testing.T) {
	for _, tc := range []struct {
		headers map[string]string
		want    string
	}{
		{map[string]string{"Authorization": "Bearer abc"}, "abc"},
		{map[string]string{"Authorization": "bearer  abc "}, "abc"},
		{map[string]string{"X-API-Key": " abc "}, "abc"},
		{map[string]string{"Authorization": "Bearer abc", "X-API-Key": "other"}, "abc"},
		{map[string]string{"Authorization": "Basic dXNlcjpwYXNz", "X-API-Key": "abc"}, "abc"},
		{map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, ""},
		{map[string]string{"Authorization": "Bearer "}, ""},
		{map[string]string{"Authorization": "Bearer"}, ""},
		{nil, ""},
	} {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		got, ok := TokenFromHeader(h)
		assert.Equal(t, tc.want != "", ok, "%v", tc.headers)
		assert.Equal(t, tc.want, got, "%v", tc.headers)
	}
}

// The JSON field names are the wire contract (DESIGN §6): renaming a Go field
// must not rename them.
func TestJSONShapes(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := json.Marshal(VerifyResponse{Valid: true, Code: Valid, KeyID: "id", Name: "n", Role: "r",
		Workspace: "w", Permissions: []string{"p"}, ExpiresAt: &exp, Metadata: map[string]string{"a": "b"}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"valid":true,"code":"VALID","key_id":"id","name":"n","role":"r","workspace":"w",
		"permissions":["p"],"expires_at":"2030-01-02T03:04:05Z","metadata":{"a":"b"}}`, string(b))
	b, err = json.Marshal(VerifyRequest{Key: "k"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"key":"k"}`, string(b), "optional fields are omitted")
	var req VerifyRequest
	require.NoError(t, json.Unmarshal([]byte(`{"key":"k","tenant":"t","workspace":"w","permissions":["p"],"client_ip":"192.0.2.1"}`), &req))
	assert.Equal(t, VerifyRequest{Key: "k", Tenant: "t", Workspace: "w", Permissions: []string{"p"}, ClientIP: "192.0.2.1"}, req)
	b, err = json.Marshal(ErrorResponse{Error: UnavailableMessage})
	require.NoError(t, err)
	assert.JSONEq(t, `{"error":"verifier cannot decide right now"}`, string(b))
}
