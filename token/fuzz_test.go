package token

import (
	"strings"
	"testing"
)

// FuzzParse: no input panics, and anything Parse accepts renders back to itself.
func FuzzParse(f *testing.F) {
	good, _ := Generate(DefaultPrefix)
	for _, s := range []string{"", "vak", "vak__", good.String(), strings.ToUpper(good.String()),
		"vak_0000000000000000_" + strings.Repeat("0", SecretLen+ChecksumLen), "\x00\xff_é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		if tok.String() != s {
			t.Fatalf("accepted token does not round-trip")
		}
		if !ValidPrefix(tok.Prefix) || !ValidKeyID(tok.KeyID) || len(tok.Secret) != SecretLen {
			t.Fatalf("accepted a token with bad parts")
		}
	})
}
