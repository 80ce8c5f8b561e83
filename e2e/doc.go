// Package e2e holds end-to-end tests of the whole system on loopback: the real
// Vault binary with the plugin and transit, the apikeys-verifier binary, and
// where a test says so, Debian's nginx or caddy running the shipped recipes in
// deploy/, gitleaks, scripts/dev-stack with the README's commands, or a 3-node
// Raft cluster.
//
// These tests must never print a key or secret, even on failure.
package e2e
