package vaultaddr

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/assert"
)

func TestSplit(t *testing.T) {
	assert.Equal(t, []string{"http://a:8200"}, Split("http://a:8200"))
	assert.Equal(t, []string{"http://a", "http://b"}, Split(" http://a , ,http://b ,"))
	assert.Empty(t, Split(" , "))
}

func TestRingMovesOnOnlyWhenUnreachable(t *testing.T) {
	down := errors.New("dial tcp: connection refused")
	sealed := &api.ResponseError{StatusCode: http.StatusServiceUnavailable}
	denied := &api.ResponseError{StatusCode: http.StatusForbidden}

	r := NewRing(3)
	var tried []int
	err := r.Do(0, func(i int) error {
		tried = append(tried, i)
		return map[int]error{0: down, 1: sealed, 2: nil}[i]
	})
	assert.NoError(t, err)
	assert.Equal(t, []int{0, 1, 2}, tried)

	// The next call starts at the address that answered; a Vault error is an answer.
	tried = nil
	err = r.Do(0, func(i int) error { tried = append(tried, i); return denied })
	assert.ErrorIs(t, err, denied)
	assert.Equal(t, []int{2}, tried)

	// attempts bounds how many addresses one call tries.
	tried = nil
	err = r.Do(2, func(i int) error { tried = append(tried, i); return down })
	assert.ErrorIs(t, err, down)
	assert.Equal(t, []int{2, 0}, tried)
}

func TestNoAnswer(t *testing.T) {
	assert.False(t, NoAnswer(nil))
	assert.True(t, NoAnswer(errors.New("dial tcp: connection refused")))
	assert.False(t, NoAnswer(&api.ResponseError{StatusCode: http.StatusServiceUnavailable}))
	assert.False(t, NoAnswer(fmt.Errorf("wrapped: %w", &api.ResponseError{StatusCode: http.StatusForbidden})))
}

// A bounded number of attempts must still reach every address over successive
// calls: the verifier tries two of three, and with the first two down the
// third has to be found on the next call.
func TestRingDoWhileLeavesDeadAddressesBehind(t *testing.T) {
	down := errors.New("dial tcp: connection refused")
	sealed := &api.ResponseError{StatusCode: http.StatusServiceUnavailable}
	r := NewRing(3)
	var tried []int
	call := func(i int) error {
		tried = append(tried, i)
		return map[int]error{0: down, 1: down, 2: nil}[i]
	}
	assert.ErrorIs(t, r.DoWhile(2, NoAnswer, call), down)
	assert.Equal(t, []int{0, 1}, tried)
	assert.Equal(t, 2, r.Current())
	tried = nil
	assert.NoError(t, r.DoWhile(2, NoAnswer, call))
	assert.Equal(t, []int{2}, tried)

	// With NoAnswer, a sealed node's 503 is final.
	tried = nil
	err := r.DoWhile(0, NoAnswer, func(i int) error { tried = append(tried, i); return sealed })
	assert.ErrorIs(t, err, sealed)
	assert.Equal(t, []int{2}, tried)
}

func TestStatus(t *testing.T) {
	assert.Equal(t, 0, Status(nil))
	assert.Equal(t, 0, Status(errors.New("dial tcp: connection refused")))
	assert.Equal(t, http.StatusForbidden, Status(fmt.Errorf("wrapped: %w", &api.ResponseError{StatusCode: http.StatusForbidden})))
}
