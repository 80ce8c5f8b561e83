// Package envelope seals and opens a record's secret digest with AES-256-GCM under
// a data key (DEK) that Vault's transit engine wraps. The plugin seals, the
// verifier opens; both use this package so the format has one definition.
//
// It never sees a plaintext token, never logs, and its errors carry no key material.
package envelope

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// Version is the format of Sealed this package writes.
const Version = 1

// DEKSize is the length of a data key: AES-256.
const DEKSize = 32

// ErrOpen is returned when a sealed value does not open under the given key and
// additional data: wrong key, wrong mount or key_id, or tampering.
var ErrOpen = errors.New("sealed record does not open: wrong data key, wrong binding, or tampered")

// Sealed is what a record stores instead of its secret: the digest under a DEK,
// and the DEK wrapped by transit ("vault:vN:…").
type Sealed struct {
	V          int    `json:"v"`
	WrappedDEK string `json:"dek"`
	Nonce      string `json:"nonce"`
	Ciphertext string `json:"ct"`
}

// AAD binds a sealed value to its mount and key_id so that a record copied to
// another mount or another key_id does not open.
func AAD(mountID, keyID string) []byte {
	return []byte("vault-apikeys/v1\x00" + mountID + "\x00" + keyID)
}

// Seal encrypts plaintext under dek. wrapped is the transit-wrapped form of dek,
// stored beside the ciphertext.
func Seal(dek []byte, wrapped string, aad, plaintext []byte) (Sealed, error) {
	aead, err := newAEAD(dek)
	if err != nil {
		return Sealed{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sealed{}, fmt.Errorf("read nonce: %w", err)
	}
	ct := aead.Seal(nil, nonce, plaintext, aad)
	return Sealed{
		V:          Version,
		WrappedDEK: wrapped,
		Nonce:      base64.StdEncoding.EncodeToString(nonce),
		Ciphertext: base64.StdEncoding.EncodeToString(ct),
	}, nil
}

// Open decrypts s under dek, checking aad.
func Open(dek []byte, s Sealed, aad []byte) ([]byte, error) {
	if s.V != Version {
		return nil, fmt.Errorf("sealed record version %d is not supported (want %d)", s.V, Version)
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	nonce, err := base64.StdEncoding.DecodeString(s.Nonce)
	if err != nil || len(nonce) != aead.NonceSize() {
		return nil, ErrOpen
	}
	ct, err := base64.StdEncoding.DecodeString(s.Ciphertext)
	if err != nil {
		return nil, ErrOpen
	}
	pt, err := aead.Open(nil, nonce, ct, aad)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

func newAEAD(dek []byte) (cipher.AEAD, error) {
	if len(dek) != DEKSize {
		return nil, fmt.Errorf("data key is %d bytes, want %d", len(dek), DEKSize)
	}
	block, err := aes.NewCipher(dek)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
