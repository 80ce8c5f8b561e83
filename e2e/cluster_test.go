package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/stretchr/testify/require"

	"github.com/vault-apikeys/vault-apikeys/internal/vaulttest"
)

// cluster is a Vault with integrated storage started by scripts/raft-cluster.
type cluster struct {
	dir       string
	addrs     []string
	token     string
	unsealKey string
	clients   []*api.Client
}

// freeBase finds a base port whose 2*n ports (spaced by 10) are all free.
func freeBase(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + rand.IntN(2000)*10
		ok := true
		for i := 0; i < n && ok; i++ {
			for _, p := range []int{base + 10*i, base + 10*i + 1} {
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range for the cluster")
	return 0
}

func startCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts a Raft cluster of real Vault servers (skipped by -short)")
	}
	c := &cluster{dir: t.TempDir()}
	script := filepath.Join(vaulttest.Root(), "scripts", "raft-cluster")
	cmd := exec.Command(script, "start", c.dir)
	cmd.Env = append(os.Environ(), fmt.Sprintf("RAFT_NODES=%d", nodes), fmt.Sprintf("RAFT_BASE_PORT=%d", freeBase(t, nodes)), "VAULT_ADDR=", "VAULT_TOKEN=")
	t.Cleanup(func() { _ = exec.Command(script, "stop", c.dir).Run() })
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("raft-cluster start: %v\n%s", err, out)
	}
	f, err := os.Open(filepath.Join(c.dir, "env"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "VAULT_ADDRS":
			c.addrs = strings.Split(v, ",")
		case "VAULT_TOKEN":
			c.token = v
		case "UNSEAL_KEY":
			c.unsealKey = v
		}
	}
	for _, a := range c.addrs {
		conf := api.DefaultConfig()
		conf.Address = a
		conf.Timeout = 5 * time.Second
		conf.MaxRetries = 0
		cl, err := api.NewClient(conf)
		require.NoError(t, err)
		cl.SetToken(c.token)
		c.clients = append(c.clients, cl)
	}
	return c
}

// do runs fn against the nodes in turn until one answers (standbys forward to the active node).
func (c *cluster) do(fn func(*api.Client) error) error {
	var err error
	for _, cl := range c.clients {
		if err = fn(cl); err == nil {
			return nil
		}
		if re, ok := err.(*api.ResponseError); ok && re.StatusCode < 500 {
			return err
		}
	}
	return err
}

func (c *cluster) script(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(vaulttest.Root(), "scripts", "raft-cluster"), append([]string{args[0], c.dir}, args[1:]...)...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR=", "VAULT_TOKEN=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// activeNode returns the 1-based index of the active node.
func (c *cluster) activeNode(t *testing.T) int {
	t.Helper()
	var leader string
	require.NoError(t, c.do(func(cl *api.Client) error {
		l, err := cl.Sys().Leader()
		if err == nil {
			leader = l.LeaderAddress
		}
		return err
	}))
	for i, a := range c.addrs {
		if a == leader {
			return i + 1
		}
	}
	t.Fatalf("leader %q is not a cluster node", leader)
	return 0
}

// verifierToken returns a periodic token with the verifier policy the script wrote.
func (c *cluster) verifierToken(t *testing.T) string {
	t.Helper()
	var tok string
	require.NoError(t, c.do(func(cl *api.Client) error {
		sec, err := cl.Auth().Token().CreateOrphan(&api.TokenCreateRequest{Policies: []string{"apikeys-verifier"}, NoDefaultPolicy: true, Period: "1h"})
		if err == nil {
			tok = sec.Auth.ClientToken
		}
		return err
	}))
	return tok
}

// startClusterVerifier runs the verifier against every node.
func startClusterVerifier(t *testing.T, c *cluster, extra ...string) *verifierProc {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(c.verifierToken(t)), 0o600))
	return launchVerifier(t, dir, strings.Join(c.addrs, ","), tokenFile, extra...)
}
