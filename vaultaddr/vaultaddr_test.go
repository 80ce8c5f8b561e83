package vaultaddr

import (
	"errors"
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
