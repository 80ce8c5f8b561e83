# The apikeys plugin's own transit token: data keys and rewrap on the KEK, and
# keeping itself alive. Nothing else: it cannot decrypt, read keys or policies.
path "transit/datakey/plaintext/apikeys" {
  capabilities = ["update"]
}
path "transit/rewrap/apikeys" {
  capabilities = ["update"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
