package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/vault-apikeys/vault-apikeys/internal/envflag"
	"github.com/vault-apikeys/vault-apikeys/vaultaddr"
	"github.com/vault-apikeys/vault-apikeys/verifier"
)

// options are the command line; verifier.Config is built from them.
type options struct {
	cfg            verifier.Config
	server         verifier.ServerConfig
	vaultAddrs     string
	trustedProxies string
	logFormat      string
	logLevel       string
	version        bool
}

// parseFlags reads args over the environment: a flag beats APIKEYS_VERIFIER_*,
// which beats VAULT_ADDR / VAULT_TOKEN, which beat the defaults.
func parseFlags(args []string, getenv func(string) (string, bool), stderr io.Writer) (*options, error) {
	o := &options{}
	c := &o.cfg
	fs := flag.NewFlagSet("apikeys-verifier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server.Listen, "listen", verifier.DefaultListen, "address to serve the HTTP API on")
	fs.StringVar(&o.server.MetricsListen, "metrics-listen", "", "address of a separate listener for /metrics (then not served on -listen)")
	fs.StringVar(&o.server.TLSCertFile, "tls-cert", "", "PEM certificate (chain) to serve HTTPS on every listener, with -tls-key; re-read on SIGHUP")
	fs.StringVar(&o.server.TLSKeyFile, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&o.vaultAddrs, "vault-addr", "", "Vault address(es), comma-separated (default $VAULT_ADDR); for https, the CA is $VAULT_CACERT or $VAULT_CAPATH")
	fs.StringVar(&c.VaultToken, "vault-token", "", "Vault token (default $VAULT_TOKEN; prefer the environment or -vault-token-file: flags show in ps)")
	fs.StringVar(&c.VaultTokenFile, "vault-token-file", "", "file holding a Vault token, re-read when it changes (e.g. a Vault Agent sink)")
	fs.StringVar(&c.AppRoleRoleID, "approle-role-id", "", "AppRole role id (with -approle-secret-id-file)")
	fs.StringVar(&c.AppRoleSecretIDFile, "approle-secret-id-file", "", "file holding the AppRole secret id")
	fs.StringVar(&c.Mount, "mount", verifier.DefaultMount, "mount path of the apikeys plugin")
	fs.StringVar(&c.TransitMount, "transit-mount", verifier.DefaultTransitMount, "mount path of transit")
	fs.StringVar(&c.TransitKey, "transit-key", verifier.DefaultTransitKey, "transit key that wraps the data keys")
	fs.DurationVar(&c.StaleIfError, "stale-if-error", verifier.DefaultStaleIfError, "serve cached verdicts this long after the last successful feed poll, then 503")
	fs.DurationVar(&c.UsageFlush, "usage-flush", verifier.DefaultUsageFlush, "interval of batched usage reports")
	fs.DurationVar(&c.FeedWait, "feed-wait", verifier.DefaultFeedWait, "long-poll wait of the change feed (at most 5s)")
	fs.DurationVar(&c.FeedHoldCreated, "feed-hold-created", verifier.DefaultFeedHoldCreated, "let the plugin hold a long-poll answer that only announces new keys this long, to send later ones with it (at most 100ms; negative: off); other changes come at once")
	fs.DurationVar(&c.VaultTimeout, "vault-timeout", verifier.DefaultVaultTimeout, "timeout of each Vault request")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", verifier.DefaultMaxInFlight, "most concurrent lookup requests to Vault: one goes out at once, more only beside a lookup a miss has waited 5 ms for, or with a full batch")
	fs.IntVar(&c.CacheSize, "cache-size", verifier.DefaultCacheSize, "most key records cached")
	fs.DurationVar(&c.MaxAge, "max-age", verifier.DefaultMaxAge, "oldest a cached verdict may be: refreshed in the background before, looked up after")
	fs.StringVar(&c.AuditLog, "audit-log", "", `audit log: "-" for stdout, a file path, or empty for none`)
	fs.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For is believed (set it behind a proxy: without it, CIDR-restricted keys are checked against the proxy's address)")
	fs.StringVar(&c.TenantHeader, "tenant-header", verifier.DefaultTenantHeader, "forward-auth request header naming the tenant the key must belong to (the proxy sets or clears it)")
	fs.StringVar(&c.WorkspaceHeader, "workspace-header", verifier.DefaultWorkspaceHeader, "forward-auth request header naming the workspace")
	fs.StringVar(&c.PermissionsHeader, "permissions-header", verifier.DefaultPermissionsHeader, "forward-auth request header listing the permissions (comma-separated)")
	fs.StringVar(&o.logFormat, "log-format", "standard", `log format: "standard" or "json"`)
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.DurationVar(&o.server.ShutdownTimeout, "shutdown-timeout", verifier.DefaultShutdownTimeout, "how long shutdown waits for in-flight requests")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: apikeys-verifier [flags]\n\nEvery flag can also be set as APIKEYS_VERIFIER_<FLAG> (e.g. APIKEYS_VERIFIER_STALE_IF_ERROR=10s);\nVAULT_ADDR, VAULT_TOKEN and VAULT_CACERT (VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY,\nVAULT_TLS_SERVER_NAME) are honoured as Vault's own tools do.\nSIGHUP re-reads -tls-cert/-tls-key and reopens -audit-log.\n\n")
		fs.PrintDefaults()
	}

	if err := envflag.Parse(fs, "APIKEYS_VERIFIER", args, getenv); err != nil {
		return nil, err
	}
	if o.vaultAddrs == "" {
		o.vaultAddrs, _ = getenv("VAULT_ADDR")
	}
	c.VaultAddrs = vaultaddr.Split(o.vaultAddrs)
	if c.VaultToken == "" && c.VaultTokenFile == "" && c.AppRoleRoleID == "" {
		c.VaultToken, _ = getenv("VAULT_TOKEN")
	}
	var err error
	if c.TrustedProxies, err = verifier.ParsePrefixes(o.trustedProxies); err != nil {
		return nil, fmt.Errorf("-trusted-proxies: %w", err)
	}
	if o.logFormat != "standard" && o.logFormat != "json" {
		return nil, fmt.Errorf(`-log-format must be "standard" or "json", not %q`, o.logFormat)
	}
	return o, nil
}

func lookupEnv(name string) (string, bool) { return os.LookupEnv(name) }
