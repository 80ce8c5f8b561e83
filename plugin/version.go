package plugin

// Version is the plugin's semantic version, reported to Vault as the running
// version of every mount. `make build` stamps it from git:
// -ldflags "-X github.com/vault-apikeys/vault-apikeys/plugin.Version=v…".
var Version = "v0.0.0-dev"
