# Policy for tenant admins: the one templated policy that confines every tenant
# admin of the platform to their own tenant (DESIGN §1, §4, §8).
#
#   vault policy write tenant-admin policies/tenant-admin.hcl
#   vault write auth/userpass/users/alice password=... policies=tenant-admin
#   vault write identity/entity name=alice metadata=tenant=acme metadata=apikeys_role=admin
#   vault write identity/entity-alias name=alice canonical_id=<entity id> mount_accessor=<userpass accessor>
#
# The tenant is the `tenant` metadata of the person's identity entity, set by an
# operator: a person cannot change it (no identity write below), and auth methods
# set alias metadata, never entity metadata. It must be a plain tenant name, as
# the engine's names are: `+` or `*` there would be a wildcard. A token whose
# entity has no `tenant` metadata gets nothing from the first block (Vault skips
# a path whose template does not resolve): it fails closed.
#
# Not allowed: config, role writes, the mount-wide `keys` list, `revoke`, reports,
# `tenants/<tenant>` (quotas, tenant-wide CIDRs), another tenant's anything, and
# the verifier's lookup, changes and usage. Adjust `apikeys/` if the plugin is
# mounted elsewhere.

# Everything of the person's own tenant: keys (create, read, patch, delete =
# revoke, list), key actions (disable, enable, rotate), revoke by key_id or
# leaked key, named allow-lists, reports. The glob covers the LIST forms too:
# `vault list apikeys/tenants/acme/keys` asks for `.../keys/`, and
# `vault read apikeys/tenants/acme/keys list=true ...` lists `.../keys`.
path "apikeys/tenants/{{identity.entity.metadata.tenant}}/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}

# The platform roles a key can be given (the console's role list).
path "apikeys/roles" {
  capabilities = ["list"]
}
path "apikeys/roles/*" {
  capabilities = ["read"]
}

# The person's own identity entity: the console reads the tenant from it.
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
