package verifier

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// decodeVerifyCases are bodies on both sides of the fast path's shape.
var decodeVerifyCases = []string{
	`{"key":"vak_abc"}`,
	` { "key" : "vak_abc" , "tenant":"acme", "workspace":"prod", "permissions":["a:read", "b:write"], "client_ip":"10.0.0.1" } `,
	"{\n\t\"key\":\r\n\"vak_abc\"}\n",
	`{"key":"vak_abc","permissions":[]}`,
	`{"key":"vak_abc","permissions":[ ]}`,
	`{}`, `{"key":""}`, `{ }`,
	`{"key":"vak_é"}`, `{"key":"vak_` + "\xff" + `"}`, `{"key":"a\u0041"}`, `{"key":"a\"b"}`, "{\"key\":\"a\tb\"}",
	`{"key":"a","key":"b"}`, `{"Key":"a"}`, `{"KEY":"a"}`, `{"key":"a","other":1}`, `{"key":null}`,
	`{"key":"a","permissions":null}`, `{"key":"a","permissions":["x",]}`, `{"key":"a","permissions":[1]}`,
	`{"key":"a",}`, `{"key":"a"`, `{"key":"a"}x`, `{"key":"a"} {}`, `{"key" "a"}`, `{"key":"a" "tenant":"b"}`,
	`{"key":7}`, `[]`, `null`, `""`, ``, ` `, `{`, `{"`, `{"key`, `{"key":`, `{"key":"a`, `{"key":"a","permissions":["x"`,
}

// TestDecodeVerifyFastMatchesJSON: on every case the fast path either gives
// way or reads exactly what encoding/json reads.
func TestDecodeVerifyFastMatchesJSON(t *testing.T) {
	fast := 0
	for _, body := range decodeVerifyCases {
		if checkDecodeVerifyFast(t, []byte(body)) {
			fast++
		}
	}
	// The common shapes must take the fast path, or it speeds nothing up.
	require.Equal(t, 9, fast, "bodies read by the fast path")
	req, ok := decodeVerifyFast([]byte(decodeVerifyCases[1]))
	require.True(t, ok)
	require.Equal(t, verdict.VerifyRequest{Key: "vak_abc", Tenant: "acme", Workspace: "prod", Permissions: []string{"a:read", "b:write"}, ClientIP: "10.0.0.1"}, req)
}

// checkDecodeVerifyFast fails t when the fast path reads body differently
// from encoding/json; it reports whether the fast path read it.
func checkDecodeVerifyFast(t *testing.T, body []byte) bool {
	t.Helper()
	got, ok := decodeVerifyFast(body)
	if !ok {
		return false
	}
	var want verdict.VerifyRequest
	require.NoError(t, json.Unmarshal(body, &want), "the fast path read %q, which encoding/json refuses", body)
	require.Equal(t, want, got, "body %q", body)
	// nil and empty permissions differ for require.Equal only through ObjectsAreEqual; say it outright.
	require.Equal(t, want.Permissions == nil, got.Permissions == nil, "body %q", body)
	return true
}

// FuzzDecodeVerifyFast: for any body the fast path gives way to encoding/json
// or agrees with it field for field.
func FuzzDecodeVerifyFast(f *testing.F) {
	for _, body := range decodeVerifyCases {
		f.Add([]byte(body))
	}
	f.Add([]byte(`{"key":"vak_` + strings.Repeat("A", 70) + `","permissions":["` + strings.Repeat("p", 300) + `"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeVerifyFast(t, body)
	})
}

// BenchmarkDecodeVerify reads a typical verify body the way the handler did
// before (encoding/json) and does now (the fast path): the pair is this
// change's before/after, measured in one run.
func BenchmarkDecodeVerify(b *testing.B) {
	body := []byte(`{"key":"vak_0123456789abcdef_0123456789012345678901234567890123456789012ABCDEF","workspace":"prod","permissions":["clusters:read"]}`)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var req verdict.VerifyRequest
			if err := decodeVerifyJSON(body, &req); err != nil || req.Key == "" {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if req, ok := decodeVerifyFast(body); !ok || req.Key == "" {
				b.Fatal("not read")
			}
		}
	})
}
