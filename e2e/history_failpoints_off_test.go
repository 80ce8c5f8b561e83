//go:build !failpoints

package e2e

// failpointsBuilt: see history_failpoints_on_test.go.
const failpointsBuilt = false
