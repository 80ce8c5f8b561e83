package verifier

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/verifier/middleware"
)

// jsonFields are the JSON names of t's fields (Go names where untagged).
func jsonFields(t reflect.Type, skip ...string) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" {
			name = t.Field(i).Name
		}
		if !slices.Contains(skip, name) {
			out = append(out, name)
		}
	}
	return out
}

// A key field verifiers return passes through three shapes: the verifier's
// Verdict, the wire answer (verdict.VerifyResponse) and the middleware's Key.
// A field added to one and forgotten in another fails here instead of being
// silently dropped between programs.
func TestKeyFieldsDoNotDrift(t *testing.T) {
	wire := jsonFields(reflect.TypeOf(verdict.VerifyResponse{}), "valid", "code")
	assert.ElementsMatch(t, wire, jsonFields(reflect.TypeOf(middleware.Key{})), "middleware.Key against verdict.VerifyResponse")

	// Verdict is untagged: its Go names, mapped to the wire names they fill.
	goToWire := map[string]string{"KeyID": "key_id", "Tenant": "tenant", "Name": "name", "Role": "role", "Workspace": "workspace",
		"Permissions": "permissions", "ExpiresAt": "expires_at", "Metadata": "metadata"}
	var got []string
	for _, f := range jsonFields(reflect.TypeOf(Verdict{}), "Code", "FeedSeq") {
		if w, ok := goToWire[f]; ok {
			got = append(got, w)
		} else {
			t.Errorf("Verdict.%s is not on the wire: add it to verdict.VerifyResponse, middleware.Key and this map", f)
		}
	}
	assert.ElementsMatch(t, jsonFields(reflect.TypeOf(verdict.VerifyResponse{}), "valid", "code"), got)
}
