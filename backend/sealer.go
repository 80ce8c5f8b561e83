package backend

import (
	"context"

	"github.com/vault-apikeys/vault-apikeys/envelope"
)

// Sealer seals record digests under data keys that a KEK (transit) wraps.
// Defined here, where it is used, so unit tests can run an in-process one.
type Sealer interface {
	// Seal seals plaintext bound to aad under a current data key. In the common
	// case it does not wait on transit: a data key is kept ready in memory.
	Seal(ctx context.Context, aad, plaintext []byte) (envelope.Sealed, error)
	// Rewrap returns each wrapped data key rewrapped under the newest KEK version.
	Rewrap(ctx context.Context, wrapped []string) ([]string, error)
	// Forget drops prepared data keys so the next seal uses a fresh one, wrapped
	// under the newest KEK version (after a KEK rotation).
	Forget()
	// Close stops background work and forgets data keys.
	Close()
}
