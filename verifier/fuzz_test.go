package verifier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/envelope"
	"github.com/vault-apikeys/vault-apikeys/token"
	"github.com/vault-apikeys/vault-apikeys/verdict"
	"github.com/vault-apikeys/vault-apikeys/wire"
)

// fuzzVerifier builds a Verifier without background work, so that coverage
// depends on the input alone: its feed is marked fresh for a long window, one
// real key is cached, and Vault is unreachable (a miss answers 503 at once).
func fuzzVerifier(f *testing.F) (*Verifier, string) {
	v, err := New(Config{VaultAddrs: []string{"http://127.0.0.1:1"}, VaultToken: "t", StaleIfError: 1000 * time.Hour})
	require.NoError(f, err)
	f.Cleanup(func() { _ = v.Close() })
	// A fixed key, so that the seed corpus means the same in every process.
	tok := token.Token{Prefix: "vak", KeyID: "Fuzz0123456789ab", Secret: strings.Repeat("s", token.SecretLen)}
	dek := make([]byte, envelope.DEKSize)
	d := tok.Digest()
	sealed, err := envelope.Seal(dek, "vault:v1:x", envelope.AAD("m", tok.KeyID), d[:])
	require.NoError(f, err)
	rec, err := newCachedKey(wire.Entry{
		KeyID: tok.KeyID, Status: wire.StatusActive, Name: "fuzz", Tenant: "acme", Role: "ops", Workspace: "prod",
		Permissions: []string{"clusters:read"}, RoleAllowedCIDRs: []string{"127.0.0.0/8"}, TenantAllowedCIDRs: []string{"127.0.0.0/8"},
		MountID: "m", Sealed: &sealed,
	}, dek)
	require.NoError(f, err)
	require.True(f, v.cache.Insert(rec, 0))
	v.follower.lastOK.Store(time.Now().UnixNano())
	v.loader.vault = unreachable{} // no network: its goroutines would make coverage flaky
	return v, tok.String()
}

type unreachable struct{}

func (unreachable) Lookup(context.Context, []string) (wire.Batch, error) {
	return wire.Batch{}, errors.New("vault unreachable")
}

// FuzzVerifyRequest: no body makes POST /v1/verify panic or answer other than
// 200 (decided), 400 (malformed) or 503 (fail closed); decoding never echoes
// the key in an error.
func FuzzVerifyRequest(f *testing.F) {
	v, key := fuzzVerifier(f)
	for _, seed := range []string{
		`{"key":"` + key + `"}`,
		`{"key":"` + key + `","workspace":"prod","permissions":["clusters:read"],"client_ip":"10.0.0.1"}`,
		`{"key":"` + key + `","client_ip":"::ffff:10.0.0.1"}`,
		`{"key":"` + key + `","tenant":"acme"}`, `{"key":"` + key + `","tenant":"globex"}`, `{"key":"a","tenant":7}`,
		`{"key":"` + key[:len(key)-1] + `"}`,
		`{"key":"hello"}`, `{"key":""}`, `{}`, `null`, `[]`, `""`, `{not json`, ``,
		`{"key":"a","permissions":null}`, `{"key":"a","permissions":[1]}`, `{"key":"a"}{"key":"b"}`,
		`{"key":"\u0000\ud800"}`, `{"key":"vak_` + strings.Repeat("A", 70) + `"}`,
		`{"key":"a","client_ip":"999.1.1.1"}`, `{"key":"a","client_ip":"fe80::1%eth0"}`,
	} {
		f.Add([]byte(seed))
	}
	h := v.Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/verify", strings.NewReader(string(body)))
		r.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusServiceUnavailable:
		default:
			t.Fatalf("status %d for body %q", w.Code, body)
		}
		if req, err := decodeVerifyRequest(body); err != nil && req.Key != "" && len(req.Key) > 8 && strings.Contains(err.Error(), req.Key) {
			t.Fatalf("error quotes the key")
		}
	})
}

// FuzzAuthHeaders: no combination of forward-auth headers makes GET /v1/auth
// panic or answer other than 200/400/401/403/503, and only 200 carries the
// X-Apikey-Id header.
func FuzzAuthHeaders(f *testing.F) {
	v, key := fuzzVerifier(f)
	for _, s := range [][4]string{
		{"Bearer " + key, "", "prod", "clusters:read"},
		{"", key, "", ""},
		{"bearer   " + key + "  ", "", "", " , ,clusters:read,"},
		{"Basic dXNlcjpwYXNz", "", "", ""},
		{"Bearer", "", "", ""},
		{"Bearer " + key[:20], "", "dev-eu", ""},
		{"", "", "", ""},
		{"Bearer \x00", "\xff\xfe", "\r\n", strings.Repeat("a,", 100)},
		{"", key, "prod", "clusters:read,clusters:delete"},
		{"Bearer x", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], "127.0.0.1")
	}
	f.Add("", key, "", "", "6.6.6.6, junk")
	h := v.Handler()
	f.Fuzz(func(t *testing.T, authz, apiKey, ws, perms, xff string) {
		r := httptest.NewRequest(http.MethodGet, "/v1/auth", nil)
		r.RemoteAddr = "127.0.0.1:1"
		for name, val := range map[string]string{"Authorization": authz, "X-API-Key": apiKey, "X-Apikey-Workspace": ws, "X-Apikey-Permissions": perms, "X-Forwarded-For": xff} {
			if val != "" {
				r.Header[name] = []string{val}
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if w.Header().Get("X-Apikey-Id") == "" {
				t.Fatal("200 without X-Apikey-Id")
			}
		case http.StatusUnauthorized:
			if !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer ") {
				t.Fatal("401 without WWW-Authenticate")
			}
			fallthrough
		case http.StatusBadRequest, http.StatusForbidden, http.StatusServiceUnavailable:
			if w.Header().Get("X-Apikey-Id") != "" {
				t.Fatalf("%d with X-Apikey-Id", w.Code)
			}
		default:
			t.Fatalf("status %d", w.Code)
		}
		presented, _ := verdict.TokenFromHeader(r.Header)
		if tok, err := token.Parse(presented); err == nil && strings.Contains(w.Body.String(), tok.Secret) {
			t.Fatal("the answer quotes the secret")
		}
	})
}

// FuzzDecodeAnswer: decodeData (one pass, typed envelope) never panics and
// agrees with the two-pass decode it replaced (the envelope's data as raw
// bytes, then those decoded): the same answers succeed, into the same values.
// A member named twice is left out of the comparison: Vault never sends one,
// and there the typed decode merges both where the raw one keeps the last.
func FuzzDecodeAnswer(f *testing.F) {
	f.Add([]byte(`{"request_id":"r","data":{"seq":7,"entries":[{"key_id":"k","status":"active","permissions":["a"],"sealed":{"v":1,"dek":"vault:v1:x","nonce":"n","ct":"c"},"seq":7}]},"warnings":null}`))
	f.Add([]byte(`{"data":{"head":3,"changes":[{"seq":3,"key_id":"k","op":"revoked"}]}}`))
	f.Add([]byte(`{"data":null}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"data":"not an object"}`))
	f.Add([]byte(`{"data":{"seq":18446744073709551615}} trailing`))
	f.Fuzz(func(t *testing.T, answer []byte) {
		var batch, wantBatch wire.Batch
		err := decodeData(answer, &batch)
		wantErr := decodeTwoPass(answer, &wantBatch)
		var changes, wantChanges wire.Changes
		cerr := decodeData(answer, &changes)
		wantCErr := decodeTwoPass(answer, &wantChanges)
		if dataMembers(answer) > 1 {
			return
		}
		require.Equal(t, wantErr == nil, err == nil, "batch: two-pass %v, one pass %v", wantErr, err)
		require.Equal(t, wantCErr == nil, cerr == nil, "changes: two-pass %v, one pass %v", wantCErr, cerr)
		if err == nil {
			require.Equal(t, wantBatch, batch)
		}
		if cerr == nil {
			require.Equal(t, wantChanges, changes)
		}
	})
}

// dataMembers counts the answer's top-level members that encoding/json
// matches to "data" (case-insensitively, escapes undone).
func dataMembers(answer []byte) int {
	dec := json.NewDecoder(bytes.NewReader(answer))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return n
		}
		if k, ok := key.(string); ok && strings.EqualFold(k, "data") {
			n++
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return n
		}
	}
	return n
}

// decodeTwoPass is the decode decodeData replaced, kept as its oracle.
func decodeTwoPass(answer []byte, out any) error {
	var envelope struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(answer, &envelope); err != nil {
		return err
	}
	if len(envelope.Data) == 0 || string(envelope.Data) == "null" {
		return errors.New("response has no data")
	}
	return json.Unmarshal(envelope.Data, out)
}
