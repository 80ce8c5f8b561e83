package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"unsafe"
)

const (
	// DefaultPrefix is the prefix a mount uses unless configured otherwise.
	DefaultPrefix = "vak"
	// KeyIDLen is the length of the public key identifier.
	KeyIDLen = 16
	// SecretLen is the length of the secret part: 43 base62 characters carry 256 bits.
	SecretLen = 43
	// ChecksumLen is the length of the base62-encoded CRC32.
	ChecksumLen = 6
	// MaxLen bounds any token this package accepts (longest prefix).
	MaxLen = 10 + 1 + KeyIDLen + 1 + SecretLen + ChecksumLen

	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Errors returned by Parse. They never quote the input.
var (
	ErrFormat   = errors.New("token is not of the form <prefix>_<key_id>_<secret><checksum>")
	ErrChecksum = errors.New("token checksum does not match: it was mistyped or truncated")
)

// Token is a parsed API key. Its fields are substrings of the parsed input.
type Token struct {
	Prefix string
	KeyID  string
	Secret string
}

// String renders the full token, checksum included.
func (t Token) String() string {
	body := t.Prefix + "_" + t.KeyID + "_" + t.Secret
	return body + checksum(body)
}

// Digest is SHA-256(key_id ‖ secret): the only form of the secret a record keeps
// (sealed), and what the verifier compares in constant time.
func (t Token) Digest() [sha256.Size]byte {
	var buf [KeyIDLen + SecretLen]byte
	n := copy(buf[:], t.KeyID)
	copy(buf[n:], t.Secret)
	return sha256.Sum256(buf[:])
}

// Equal reports whether two digests are equal, in constant time.
func Equal(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// ValidPrefix reports whether p is a legal prefix: [a-z][a-z0-9]{1,9}.
func ValidPrefix(p string) bool {
	if len(p) < 2 || len(p) > 10 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ValidKeyID reports whether id has the shape of a key_id (16 base62 characters).
func ValidKeyID(id string) bool {
	return len(id) == KeyIDLen && isBase62(id)
}

// Generate returns a new token with a random key_id and secret.
func Generate(prefix string) (Token, error) {
	if !ValidPrefix(prefix) {
		return Token{}, fmt.Errorf("invalid prefix %q: want [a-z][a-z0-9]{1,9}", prefix)
	}
	id, err := randomBase62(KeyIDLen)
	if err != nil {
		return Token{}, err
	}
	secret, err := randomBase62(SecretLen)
	if err != nil {
		return Token{}, err
	}
	return Token{Prefix: prefix, KeyID: id, Secret: secret}, nil
}

// NewKeyID returns a fresh random key_id.
func NewKeyID() (string, error) { return randomBase62(KeyIDLen) }

// Parse checks the format and checksum of s offline. It does not allocate.
func Parse(s string) (Token, error) {
	if len(s) > MaxLen || len(s) < 2+1+KeyIDLen+1+SecretLen+ChecksumLen {
		return Token{}, ErrFormat
	}
	// The prefix is everything before the first '_', and the rest has fixed width.
	rest := 1 + KeyIDLen + 1 + SecretLen + ChecksumLen
	p := len(s) - rest
	if p < 2 || s[p] != '_' || s[p+1+KeyIDLen] != '_' {
		return Token{}, ErrFormat
	}
	prefix := s[:p]
	id := s[p+1 : p+1+KeyIDLen]
	secret := s[p+2+KeyIDLen : len(s)-ChecksumLen]
	sum := s[len(s)-ChecksumLen:]
	if !ValidPrefix(prefix) || !isBase62(id) || !isBase62(secret) || !isBase62(sum) {
		return Token{}, ErrFormat
	}
	if !checksumMatches(s[:len(s)-ChecksumLen], sum) {
		return Token{}, ErrChecksum
	}
	return Token{Prefix: prefix, KeyID: id, Secret: secret}, nil
}

func checksumMatches(body, sum string) bool {
	// Read the string's bytes in place: crc32 only reads them, and a []byte
	// conversion would allocate on every verify.
	want := crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(body), len(body)))
	var got uint64
	for i := 0; i < len(sum); i++ {
		got = got*62 + uint64(digit(sum[i]))
	}
	return got == uint64(want)
}

func checksum(body string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	var out [ChecksumLen]byte
	for i := ChecksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return string(out[:])
}

func digit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	default:
		return int(c-'a') + 36
	}
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9') && !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

// randomBase62 draws n characters uniformly by rejection sampling crypto/rand bytes.
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", fmt.Errorf("read crypto/rand: %w", err)
		}
		for _, b := range buf {
			if b < 248 { // 248 = 4*62: keeps the draw uniform
				out = append(out, alphabet[b%62])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}
