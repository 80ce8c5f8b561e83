//go:build !failpoints

package backend

import "context"

// Failpoints are compiled out of the product: these are empty and inline away.
// See failpoint_on.go (build tag failpoints) for what they do in tests.

func failpointScope(ctx context.Context, _ string) context.Context { return ctx }

func failpoint(context.Context, string) {}
