//go:build failpoints

package e2e

// failpointsBuilt: this test binary, and (through GOFLAGS) the plugin it
// builds, have the plugin's failpoints (backend/failpoint_on.go).
const failpointsBuilt = true
