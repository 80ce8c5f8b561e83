package verifier

import (
	"context"
	"sync"

	"github.com/vault-apikeys/vault-apikeys/envelope"
)

// keyring is a bounded cache of data keys unwrapped by transit, keyed by their
// wrapped form ("vault:vN:…"). Many records share one data key, so most cold
// verifies need only the lookup round trip.
type keyring struct {
	mu    sync.Mutex
	keys  map[string][]byte
	limit int
	vault *vaultAPI
}

func newKeyring(limit int, v *vaultAPI) *keyring {
	return &keyring{keys: make(map[string][]byte), limit: limit, vault: v}
}

// Unwrap returns the data keys for wrapped, asking transit in one batch for the
// ones it does not hold. A key transit would not unwrap is absent from the map.
func (k *keyring) Unwrap(ctx context.Context, wrapped []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(wrapped))
	var missing []string
	k.mu.Lock()
	for _, w := range wrapped {
		if _, seen := out[w]; seen {
			continue
		}
		if dek, ok := k.keys[w]; ok {
			out[w] = dek
			continue
		}
		out[w] = nil
		missing = append(missing, w)
	}
	k.mu.Unlock()
	for w, dek := range out {
		if dek == nil {
			delete(out, w)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	deks, err := k.vault.Decrypt(ctx, missing)
	if err != nil {
		return out, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, dek := range deks {
		if len(dek) != envelope.DEKSize {
			continue
		}
		out[missing[i]] = dek
		if len(k.keys) >= k.limit {
			for victim := range k.keys { // any one: map order is random
				delete(k.keys, victim)
				break
			}
		}
		k.keys[missing[i]] = dek
	}
	return out, nil
}

// Len is the number of data keys held.
func (k *keyring) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}
