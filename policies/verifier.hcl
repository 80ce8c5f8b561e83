# Policy for apikeys-verifier: least privilege.
#
#   vault policy write apikeys-verifier policies/verifier.hcl
#   vault token create -policy=apikeys-verifier -period=24h      # or an AppRole with this policy
#
# The verifier reads key records and the change feed, reports batched usage, and
# unwraps data keys with transit. It cannot issue, list, change or revoke keys,
# read config, or encrypt/rewrap with transit. One verifier serves every tenant
# of the mount: nothing here names a tenant. Adjust the mount paths if the
# plugin or transit are mounted elsewhere (-mount, -transit-mount, -transit-key).

# lookup/<key_id>: one key record (sealed digest, status, effective permissions).
path "apikeys/lookup/*" {
  capabilities = ["read"]
}

# lookup: up to 100 key records in one request (batched cache misses). The
# verifier reads (key_ids in the query); update is the same lookup as a write,
# which it falls back to when read is not granted.
path "apikeys/lookup" {
  capabilities = ["read", "update"]
}

# changes: the change feed, followed by long-poll.
path "apikeys/changes" {
  capabilities = ["read"]
}

# usage: batched use counts and last-used times.
path "apikeys/usage" {
  capabilities = ["update"]
}

# Unwrap the data keys that seal key digests. Decrypt only.
path "transit/decrypt/apikeys" {
  capabilities = ["update"]
}

# Keep its own token alive (also in Vault's default policy; listed for tokens
# created with -no-default-policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
