//go:build benchfloor

// Command floorplugin is the plugin as `make bench` builds it to measure
// Vault's own per-request cost for an external plugin: the product backend
// plus the bench-only bench/floor and bench/contract paths
// (backend/path_benchfloor.go). It is
// built with -tags benchfloor into the bench's temporary plugin directory and
// never shipped.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/vault-apikeys/vault-apikeys/backend"
)

func main() {
	logger := hclog.New(&hclog.LoggerOptions{Name: "apikeys-benchfloor"})
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		logger.Error("bad flags", "error", err)
		os.Exit(1)
	}
	// Served the way the product plugin is (plugin.Serve): multiplexed, TLS to Vault.
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.BenchFloorFactory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
		Logger:             logger,
	}); err != nil {
		logger.Error("plugin shutting down", "error", err)
		os.Exit(1)
	}
}
