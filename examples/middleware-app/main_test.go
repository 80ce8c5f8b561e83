package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

func TestApp(t *testing.T) {
	codes := map[string]string{"good": "VALID", "gone": "REVOKED"}
	verifier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req middleware.Request
		require.NoError(t, json.NewDecoder(r.Body).Decode(&req))
		code := codes[req.Key]
		if req.Workspace == "dev" {
			code = "WORKSPACE_MISMATCH"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"valid": code == "VALID", "code": code, "key_id": "k1", "name": "ci", "role": "ops"})
	}))
	defer verifier.Close()
	app := newApp(middleware.NewClient(verifier.URL, middleware.WithCacheTTL(0)))
	get := func(path, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		if key != "" {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		w := httptest.NewRecorder()
		app.ServeHTTP(w, r)
		return w
	}
	w := get("/whoami", "good")
	require.Equal(t, http.StatusOK, w.Code)
	assert.Contains(t, w.Body.String(), `"name":"ci"`, "the handler sees the key")
	assert.Equal(t, http.StatusOK, get("/workspaces/prod/clusters", "good").Code)
	assert.Equal(t, http.StatusForbidden, get("/workspaces/dev/clusters", "good").Code)
	assert.Equal(t, http.StatusUnauthorized, get("/whoami", "gone").Code)
	assert.Equal(t, http.StatusUnauthorized, get("/whoami", "").Code)
}
