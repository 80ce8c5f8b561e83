# A read-only auditor: records, roles, reports and the change feed. Never the
# config, never a write: it cannot issue, revoke, rotate or change anything.
path "apikeys/keys" {
  capabilities = ["list"]
}
path "apikeys/keys/*" {
  capabilities = ["read", "list"]
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
path "apikeys/changes" {
  capabilities = ["read"]
}
