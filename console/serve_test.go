package console

import (
	"context"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Serve answers on its address until ctx is done, then returns nil.
func TestServeUntilCancelled(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.console.Serve(ctx, ServeConfig{Listen: "127.0.0.1:0"}) }()

	var url string
	require.Eventually(t, func() bool {
		m := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(h.log.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}, 10*time.Second, 10*time.Millisecond, "Serve logs where it listens")
	resp, err := http.Get(url + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Less(t, resp.StatusCode, 500)

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

func TestServeReportsAnAddressInUse(t *testing.T) {
	h := newHarness(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	err = h.console.Serve(context.Background(), ServeConfig{Listen: ln.Addr().String()})
	assert.ErrorContains(t, err, ln.Addr().String())
}
