package verifier

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

// TestContractDoesNotDrift renders every code the way the verifier answers it
// (forward-auth, and POST /v1/verify read back by the middleware's client) and
// checks that both sides give the status of verdict's one rule. A code added to
// verdict without a decided status, or a side that grows its own rule, fails here.
func TestContractDoesNotDrift(t *testing.T) {
	var current Code
	fakeVerifier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req verdict.VerifyRequest
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.Key == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		writeVerifyAnswer(w, &Verdict{Code: current, KeyID: "AAAAAAAAAAAAAAAA", Name: "n", Role: "r"})
	}))
	t.Cleanup(fakeVerifier.Close)
	app := middleware.Middleware(middleware.NewClient(fakeVerifier.URL, middleware.WithCacheTTL(0)))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))

	for _, code := range verdict.Codes() {
		current = code
		fa := httptest.NewRecorder()
		writeAuthAnswer(fa, Verdict{Code: code, KeyID: "AAAAAAAAAAAAAAAA"})

		r := httptest.NewRequest(http.MethodGet, "/app", nil)
		r.Header.Set("X-API-Key", "some-key")
		mw := httptest.NewRecorder()
		app.ServeHTTP(mw, r)

		assert.Equal(t, code.Status(), fa.Code, "forward-auth status of %s", code)
		assert.Equal(t, fa.Code, mw.Code, "forward-auth and the middleware disagree on %s", code)
		assert.Equal(t, string(code), fa.Header().Get(verdict.HeaderCode))
		if code.Status() == http.StatusUnauthorized {
			assert.Equal(t, verdict.WWWAuthenticate, fa.Header().Get("WWW-Authenticate"), code)
			assert.Equal(t, verdict.WWWAuthenticate, mw.Header().Get("WWW-Authenticate"), code)
		}
		if code != verdict.Valid {
			var fb, mb verdict.ErrorResponse
			require.NoError(t, json.Unmarshal(fa.Body.Bytes(), &fb), code)
			require.NoError(t, json.Unmarshal(mw.Body.Bytes(), &mb), code)
			assert.Equal(t, code, fb.Code)
			assert.Equal(t, code, mb.Code)
			assert.Empty(t, fa.Header().Get(verdict.HeaderKeyID), "no key identity on a denial")
		}
	}
}
