# Policy for platform key operators: every tenant's keys, incident response
# anywhere in the mount, tenants and reports (DESIGN §4).
#
#   vault policy write apikeys-key-operator policies/key-operator.hcl
#
# Allowed: the mount-wide `keys` list (rows <tenant>/<name>; filters through
# `vault read apikeys/keys list=true tenant=acme ...`), every path under
# `tenants/` (keys, key actions, revoke, allow-lists and reports of any tenant;
# the tenant records themselves: description, max_keys, allowed_cidrs), `revoke`
# by key_id or leaked key anywhere, reports, and reading the roles.
# Not allowed: config (transit token, quotas of the mount), role writes,
# rewrap, tidy, and the verifier's lookup, changes and usage.

path "apikeys/keys" {
  capabilities = ["list"]
}
path "apikeys/tenants" {
  capabilities = ["list"]
}
path "apikeys/tenants/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
path "apikeys/revoke" {
  capabilities = ["update"]
}
path "apikeys/report/*" {
  capabilities = ["read"]
}
path "apikeys/roles" {
  capabilities = ["list"]
}
path "apikeys/roles/*" {
  capabilities = ["read"]
}
