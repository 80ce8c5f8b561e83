package envelope

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSealOpen(t *testing.T) {
	dek := make([]byte, DEKSize)
	_, _ = rand.Read(dek)
	digest := bytes.Repeat([]byte{7}, 32)
	s, err := Seal(dek, "vault:v1:abc", AAD("m1", "k1"), digest)
	require.NoError(t, err)
	assert.Equal(t, "vault:v1:abc", s.WrappedDEK)
	assert.NotContains(t, s.Ciphertext, string(digest))

	got, err := Open(dek, s, AAD("m1", "k1"))
	require.NoError(t, err)
	assert.Equal(t, digest, got)

	_, err = Open(dek, s, AAD("m2", "k1"))
	assert.ErrorIs(t, err, ErrOpen, "another mount must not open it")
	_, err = Open(dek, s, AAD("m1", "k2"))
	assert.ErrorIs(t, err, ErrOpen, "another key_id must not open it")
	other := make([]byte, DEKSize)
	_, err = Open(other, s, AAD("m1", "k1"))
	assert.ErrorIs(t, err, ErrOpen)

	// Flip one bit of the decoded ciphertext: replacing a character could leave
	// it unchanged (it failed once in 64 runs when the first character was 'A').
	raw, err := base64.StdEncoding.DecodeString(s.Ciphertext)
	require.NoError(t, err)
	raw[0] ^= 0x01
	tampered := s
	tampered.Ciphertext = base64.StdEncoding.EncodeToString(raw)
	require.NotEqual(t, s.Ciphertext, tampered.Ciphertext)
	_, err = Open(dek, tampered, AAD("m1", "k1"))
	assert.Error(t, err)
	bad := s
	bad.V = 9
	_, err = Open(dek, bad, AAD("m1", "k1"))
	assert.Error(t, err)
	_, err = Seal(dek[:16], "w", nil, digest)
	assert.Error(t, err)
}
