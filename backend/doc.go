// Package backend is the vault-apikeys secrets engine: roles, keys, the change
// feed, lookups for verifiers, usage and quotas, on Vault's logical.Storage.
//
// It must never store, log or return a key's secret after creation: records keep
// only SHA-256(key_id ‖ secret) sealed under a transit-wrapped data key.
package backend
