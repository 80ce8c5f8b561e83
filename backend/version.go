package backend

// Version is the plugin's semantic version, reported to Vault as RunningVersion.
// Release builds set it with -ldflags "-X github.com/vault-apikeys/vault-apikeys/backend.Version=v…".
var Version = "v0.1.0"
