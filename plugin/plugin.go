// Package plugin serves the apikeys backend to Vault over go-plugin
// (multiplexed: one process serves every mount of the plugin).
// It must never log request data: handlers do their own, secret-free logging.
package plugin

import (
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-apikeys/vault-apikeys/backend"
)

// Name is the name the plugin is registered under in Vault's catalog.
const Name = "vault-plugin-secrets-apikeys"

// LogLevelEnv names the environment variable that sets the plugin's log level
// (default info); set it with `vault plugin register -env`.
const LogLevelEnv = "APIKEYS_PLUGIN_LOG_LEVEL"

// NewLogger is the plugin's logger. go-plugin relays a plugin's stderr into
// Vault's log at the level each line carries only when the line is hclog JSON;
// any other line is relayed at debug, which Vault hides at its default level
// (info). So the plugin logs JSON, at info unless LogLevelEnv says otherwise.
func NewLogger(out io.Writer) hclog.Logger {
	level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
	if level == hclog.NoLevel {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{Output: out, Level: level, JSONFormat: true})
}

// Serve runs the plugin with Vault's standard flags (TLS to Vault) in args.
func Serve(args []string, logger hclog.Logger) error {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(args); err != nil {
		return err
	}
	go exitWhenOrphaned(os.Getppid, func() {
		logger.Warn("the Vault process that started this plugin is gone: exiting")
		os.Exit(0)
	}, time.Second)
	return plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.Factory(Version),
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
		Logger:             logger,
	})
}

// exitWhenOrphaned calls exit once the parent process changes (getppid is
// checked every period): Vault starts the plugin as its child, and a Vault
// killed without stopping its plugins (SIGKILL, OOM) leaves this process
// behind, serving nothing, while the next Vault starts its own. A parent that
// is already init, or a container's shim, is taken as it is: only a change
// counts.
func exitWhenOrphaned(getppid func() int, exit func(), period time.Duration) {
	parent := getppid()
	t := time.NewTicker(period)
	defer t.Stop()
	for range t.C {
		if getppid() != parent {
			exit()
			return
		}
	}
}
