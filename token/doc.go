// Package token is the API key format shared by the plugin and the verifier:
//
//	<prefix>_<key_id>_<secret><checksum>
//
// prefix is [a-z][a-z0-9]{1,9}, key_id 16 base62 characters, secret 43 base62
// characters from crypto/rand (256 bits), checksum the CRC32 (IEEE) of
// everything before it in 6 base62 characters. The checksum lets scanners and the
// verifier reject mistyped or random strings offline, without touching Vault.
//
// This package never logs, and its errors never contain the token or its secret.
package token
