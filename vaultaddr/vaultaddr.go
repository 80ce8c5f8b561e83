// Package vaultaddr reads a list of Vault addresses and runs calls against
// them, moving on to the next address only when one cannot be reached. Every
// program that talks to an HA Vault by address (the plugin's transit client,
// the verifier) uses it; it imports nothing else of ours.
package vaultaddr

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/vault/api"
)

// Split reads an address setting: one address or a comma-separated list.
// Blanks around and between commas are dropped.
func Split(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Unreachable reports whether err means that address cannot serve the call
// right now (no answer, or a 502/503 from a node that is sealed or not
// active), so another address may. Any other Vault answer, even an error, is
// the answer.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	switch Status(err) {
	case 0, http.StatusServiceUnavailable, http.StatusBadGateway:
		return true
	}
	return false
}

// NoAnswer reports whether err means no Vault answered at all (a connection
// error, a timeout): unlike Unreachable, a 502/503 is an answer. A program
// that must not send a request twice to a node that may have acted on it
// (the verifier) moves on only then.
func NoAnswer(err error) bool {
	return err != nil && Status(err) == 0
}

// Status is the HTTP status of the Vault answer that err is (0 when err is
// nil or no Vault answered).
func Status(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// Ring remembers which of n addresses to start calls at: the one that answered
// last, or the one after an address that did not answer.
type Ring struct {
	n    int
	good atomic.Int32
}

// NewRing returns a ring over n addresses (n ≥ 1).
func NewRing(n int) *Ring { return &Ring{n: max(n, 1)} }

// Current is the address the next call starts at.
func (r *Ring) Current() int { return int(r.good.Load()) % r.n }

// Do runs call(i) for address i, starting with the last one that answered and
// trying at most attempts addresses (≤ 0: all of them), moving on only while
// the error is Unreachable. It returns the last error.
func (r *Ring) Do(attempts int, call func(i int) error) error {
	return r.DoWhile(attempts, Unreachable, call)
}

// DoWhile is Do, moving on to the next address only while next(err) holds.
// An address that did not serve the call is left behind: the next call
// starts after it even when every attempt failed, so a bounded number of
// attempts still reaches every address over successive calls.
func (r *Ring) DoWhile(attempts int, next func(error) bool, call func(i int) error) error {
	if attempts <= 0 || attempts > r.n {
		attempts = r.n
	}
	start := r.Current()
	var err error
	for k := 0; k < attempts; k++ {
		i := (start + k) % r.n
		if err = call(i); !next(err) {
			r.good.Store(int32(i))
			return err
		}
		r.good.Store(int32((i + 1) % r.n))
	}
	return err
}
