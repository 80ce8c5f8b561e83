package verifier

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return string(raw) + "\n"
}

func TestAppendVerifyResponseMatchesEncodingJSON(t *testing.T) {
	exp := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	cases := []verdict.VerifyResponse{
		{},
		{Code: CodeInvalidFormat, Permissions: []string{}},
		{Valid: true, Code: CodeValid, KeyID: "AAAAAAAAAAAAAAAA", Name: "ci-deploy", Role: "dev", Workspace: "prod",
			Permissions: []string{"clusters:read", "a\"b"}, ExpiresAt: &exp, Metadata: map[string]string{"z": "1", "a": "<&>\u2028\x01é"}},
		{Name: "bad\xffutf8\ttab\\", Role: "\u2029"},
		{Code: CodeValid, KeyID: "k", Tenant: "acme", Permissions: []string{}},
	}
	for _, c := range cases {
		assert.Equal(t, jsonOf(t, c), string(appendVerifyResponse(nil, &c)))
	}
}

func TestAppendAuditLineMatchesEncodingJSON(t *testing.T) {
	cases := []auditLine{
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), RequestID: "r1", Endpoint: "verify", Code: "VALID", LatencyMS: 0.125},
		{Time: time.Unix(0, 0).UTC(), RequestID: "x", Endpoint: "auth", KeyID: "k", Name: "n\"", Code: "NOT_FOUND", Workspace: "w", ClientIP: "::1", LatencyMS: 12},
		{Time: time.Unix(0, 0).UTC(), RequestID: "t", Endpoint: "auth", KeyID: "k", Tenant: "acme\"", Code: "TENANT_MISMATCH", LatencyMS: 1, FeedSeq: 7},
	}
	for _, c := range cases {
		assert.Equal(t, jsonOf(t, c), string(appendAuditLine(nil, &c)))
	}
}

// FuzzAppendString: every string renders as valid JSON that decodes to what
// encoding/json's rendering decodes to. Semantic, not byte, equality: both
// "\b" and "\u0008" are valid escapes, and encoding/json changed its choice
// in Go 1.22, so byte equality would tie the encoder to one Go release.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\", "\x00\x1f\x7f", "\b\f\n\r\t", "<>&", "\u2028\u2029", "é漢", "\xff\xfe", "a\xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got := appendString(nil, s)
		if !json.Valid(got) {
			t.Fatalf("appendString(%q) = %s: not valid JSON", s, got)
		}
		var gotS, wantS string
		if err := json.Unmarshal(got, &gotS); err != nil {
			t.Fatalf("appendString(%q) = %s: %v", s, got, err)
		}
		if err := json.Unmarshal(want, &wantS); err != nil {
			t.Fatal(err)
		}
		if gotS != wantS {
			t.Fatalf("appendString(%q) = %s decodes to %q, encoding/json's %s decodes to %q", s, got, gotS, want, wantS)
		}
	})
}

// A response with every field set, whatever fields VerifyResponse grows: a
// field the hand-written encoder forgets fails here even when it is omitempty.
func TestAppendVerifyResponseWritesEveryField(t *testing.T) {
	var r verdict.VerifyResponse
	exp := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.String:
			f.SetString("x" + v.Type().Field(i).Name)
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.Type() == reflect.TypeOf([]string(nil)):
			f.Set(reflect.ValueOf([]string{"p:" + v.Type().Field(i).Name}))
		case f.Type() == reflect.TypeOf(map[string]string(nil)):
			f.Set(reflect.ValueOf(map[string]string{"k": v.Type().Field(i).Name}))
		case f.Type() == reflect.TypeOf(&exp):
			f.Set(reflect.ValueOf(&exp))
		default:
			t.Fatalf("VerifyResponse.%s has a type this test cannot fill: teach it", v.Type().Field(i).Name)
		}
	}
	assert.Equal(t, jsonOf(t, r), string(appendVerifyResponse(nil, &r)))
}
