package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vault-apikeys/vault-apikeys/console"
	"github.com/vault-apikeys/vault-apikeys/internal/envflag"
)

// options are the command line.
type options struct {
	cfg     console.Config
	listen  string
	tlsCert string
	tlsKey  string
}

// parseFlags reads args over the environment: a flag beats APIKEYS_CONSOLE_*,
// which beats VAULT_ADDR, which beats the defaults.
func parseFlags(args []string, getenv func(string) (string, bool), stderr io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("apikeys-console", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8090", "address to serve the console on")
	fs.StringVar(&c.VaultAddr, "vault-addr", "", "Vault address (default $VAULT_ADDR)")
	fs.StringVar(&c.Mount, "mount", console.DefaultMount, "mount path of the apikeys plugin")
	fs.StringVar(&c.AuthMethod, "auth-method", console.DefaultAuthMethod, "Vault auth method people sign in with: userpass or ldap")
	fs.StringVar(&c.AuthMount, "auth-mount", "", "mount path of that auth method (default: the method's name)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (with -tls-key); without them the console serves plain HTTP, fit for loopback only")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", console.DefaultIdleTimeout, "a session unused this long ends (its Vault token is revoked)")
	fs.DurationVar(&c.MaxLifetime, "max-session", console.DefaultMaxLifetime, "a session ends this long after sign-in at the latest")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: apikeys-console [flags]\n\nEvery flag can also be set as APIKEYS_CONSOLE_<FLAG> (e.g. APIKEYS_CONSOLE_VAULT_ADDR);\nVAULT_ADDR is honoured as Vault's own tools do. The console holds no Vault token of its own.\n\n")
		fs.PrintDefaults()
	}
	if err := envflag.Parse(fs, "APIKEYS_CONSOLE", args, getenv); err != nil {
		return nil, err
	}
	if c.VaultAddr == "" {
		c.VaultAddr, _ = getenv("VAULT_ADDR")
	}
	if c.VaultAddr == "" {
		return nil, errors.New("-vault-addr (or VAULT_ADDR) is required")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	return o, nil
}

func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
