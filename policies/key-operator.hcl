# A key operator issues, rotates, disables and revokes keys and reads reports.
# Not allowed: config (transit token, quotas), roles (permissions), rewrap.
path "apikeys/keys" {
  capabilities = ["list"]
}
path "apikeys/keys/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "apikeys/revoke" {
  capabilities = ["update"]
}
path "apikeys/roles" {
  capabilities = ["list"]
}
path "apikeys/roles/*" {
  capabilities = ["read"]
}
path "apikeys/report/*" {
  capabilities = ["read"]
}
