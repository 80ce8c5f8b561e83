//go:build failpoints

package backend

import (
	"context"
	"os"
	"strings"
	"time"
)

// Failpoints make rare interleavings happen on purpose in tests (the history
// checker, e2e/history): built only with -tags failpoints, never in the
// product. APIKEYS_FAILPOINTS lists name=duration pairs, comma separated; a
// named failpoint sleeps that long each time it is reached, e.g.
//
//	APIKEYS_FAILPOINTS="lookup-after-read=300ms"
//
// delays every lookup between reading a record from storage and offering it
// to the record cache (issue 14, defect 2's window). "@path" in place of the
// list names a file holding it, read at every hit, so that a test can switch
// failpoints on and off while the plugin runs. A name is the site's own name,
// prefixed by the scope of the request ("lookup-") when it has one.

func failpoints() map[string]time.Duration {
	spec := os.Getenv("APIKEYS_FAILPOINTS")
	if path, ok := strings.CutPrefix(spec, "@"); ok {
		raw, _ := os.ReadFile(path) // no file: no failpoint
		spec = string(raw)
	}
	out := map[string]time.Duration{}
	for _, kv := range strings.Split(spec, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if d, err := time.ParseDuration(val); ok && err == nil {
			out[name] = d
		}
	}
	return out
}

type failpointScopeKey struct{}

// failpointScope names the kind of request ctx serves, for the failpoints below it.
func failpointScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, failpointScopeKey{}, scope)
}

// failpoint sleeps as APIKEYS_FAILPOINTS says for name (scoped by ctx).
func failpoint(ctx context.Context, name string) {
	if scope, ok := ctx.Value(failpointScopeKey{}).(string); ok {
		name = scope + "-" + name
	}
	if d := failpoints()[name]; d > 0 {
		time.Sleep(d)
	}
}
