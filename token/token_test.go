package token

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateParseRoundTrip(t *testing.T) {
	for _, prefix := range []string{"vak", "ab", "z123456789"} {
		tok, err := Generate(prefix)
		require.NoError(t, err)
		s := tok.String()
		assert.Len(t, s, len(prefix)+1+KeyIDLen+1+SecretLen+ChecksumLen)
		got, err := Parse(s)
		require.NoError(t, err)
		assert.Equal(t, tok, got)
		assert.True(t, ValidKeyID(got.KeyID))
	}
}

func TestGenerateIsRandom(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok, err := Generate(DefaultPrefix)
		require.NoError(t, err)
		require.False(t, seen[tok.KeyID], "key_id repeated")
		require.False(t, seen[tok.Secret], "secret repeated")
		seen[tok.KeyID], seen[tok.Secret] = true, true
	}
}

func TestParseRejects(t *testing.T) {
	good, err := Generate(DefaultPrefix)
	require.NoError(t, err)
	s := good.String()
	flip := func(i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	cases := map[string]struct {
		in   string
		want error
	}{
		"empty":              {"", ErrFormat},
		"junk":               {"hello", ErrFormat},
		"truncated":          {s[:len(s)-1], ErrFormat},
		"extended":           {s + "a", ErrFormat},
		"uppercase prefix":   {"VAK" + s[3:], ErrFormat},
		"digit-first prefix": {"1ak" + s[3:], ErrFormat},
		"one-letter prefix":  {s[2:], ErrFormat},
		"overlong":           {strings.Repeat("a", MaxLen+1), ErrFormat},
		"missing separator":  {strings.Replace(s, "_", "-", 1), ErrFormat},
		"non-base62 secret":  {s[:30] + "+" + s[31:], ErrFormat},
		"unicode":            {s[:30] + "é" + s[32:], ErrFormat},
		"secret typo":        {flip(30), ErrChecksum},
		"key_id typo":        {flip(5), ErrChecksum},
		"checksum typo":      {flip(len(s) - 1), ErrChecksum},
		"checksum zeroed":    {s[:len(s)-6] + "000000", ErrChecksum},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tc.in)
			assert.ErrorIs(t, err, tc.want)
			if err != nil && len(tc.in) > 20 {
				assert.NotContains(t, err.Error(), tc.in[len(tc.in)-20:], "error must not quote the token")
			}
		})
	}
}

func TestDigestBindsKeyIDAndSecret(t *testing.T) {
	a, _ := Generate(DefaultPrefix)
	b := a
	b.KeyID = a.Secret[:KeyIDLen]
	da, db := a.Digest(), b.Digest()
	assert.False(t, Equal(da[:], db[:]))
	da2 := a.Digest()
	assert.True(t, Equal(da[:], da2[:]))
}

func TestValidPrefix(t *testing.T) {
	for p, want := range map[string]bool{"vak": true, "a1": true, "a": false, "abcdefghijk": false, "Ab": false, "a_b": false, "": false} {
		assert.Equal(t, want, ValidPrefix(p), p)
	}
	_, err := Generate("A")
	assert.Error(t, err)
}

func TestParseDoesNotAllocate(t *testing.T) {
	tok, _ := Generate(DefaultPrefix)
	s := tok.String()
	allocs := testing.AllocsPerRun(100, func() { _, _ = Parse(s) })
	assert.Zero(t, allocs)
}

func BenchmarkParse(b *testing.B) {
	tok, _ := Generate(DefaultPrefix)
	s := tok.String()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
