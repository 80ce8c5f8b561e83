// Package layout holds no code: its test enforces the import rules of DESIGN §2.
//
// The verifier, its middleware and the console talk to Vault over HTTP only, so they
// link nothing under backend/; the neutral packages (token, envelope, wire and the
// verifier's HTTP contract) import nothing else of ours, so every program may use them.
package layout
