// Command vault-plugin-secrets-apikeys is the Vault secrets-engine plugin. Vault
// starts it; register it with `vault plugin register -sha256=… secret vault-plugin-secrets-apikeys`.
package main

import (
	"fmt"
	"os"

	"github.com/vault-apikeys/vault-apikeys/plugin"
)

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println(plugin.Name, plugin.Version)
		return
	}
	logger := plugin.NewLogger(os.Stderr)
	if err := plugin.Serve(os.Args[1:], logger); err != nil {
		logger.Error("plugin shutting down", "error", err)
		os.Exit(1)
	}
}
