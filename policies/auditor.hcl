# Policy for a read-only auditor: every tenant's key records (never a key:
# records hold none), tenants, allow-lists, roles, reports and the change feed.
#
#   vault policy write apikeys-auditor policies/auditor.hcl
#
# Not allowed: the config, and any write: it cannot issue, revoke, rotate,
# disable or change anything, nor read through the verifier's lookup.

path "apikeys/keys" {
  capabilities = ["list"]
}
path "apikeys/tenants" {
  capabilities = ["list"]
}
# Tenant records, and under them keys, allow-lists and reports.
path "apikeys/tenants/*" {
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
