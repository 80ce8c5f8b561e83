// Package plugin serves the apikeys backend to Vault over go-plugin
// (multiplexed: one process serves every mount of the plugin).
// It must never log request data: handlers do their own, secret-free logging.
package plugin

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-apikeys/vault-apikeys/backend"
)

// Name is the name the plugin is registered under in Vault's catalog.
const Name = "vault-plugin-secrets-apikeys"

// Serve runs the plugin with Vault's standard flags (TLS to Vault) in args.
func Serve(args []string, logger hclog.Logger) error {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(args); err != nil {
		return err
	}
	return plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.Factory(Version),
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
		Logger:             logger,
	})
}
