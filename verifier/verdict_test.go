package verifier

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// Of every code package verdict defines, only VALID lets a request through.
func TestOnlyValidIsValid(t *testing.T) {
	for _, c := range verdict.Codes() {
		assert.Equal(t, c == verdict.Valid, Verdict{Code: c}.Valid(), c)
	}
	assert.False(t, Verdict{}.Valid(), "the zero verdict fails closed")
}
