// Package console is the tenant admins' web console (DESIGN §8): sign in
// through a Vault auth method, then list, create, disable, enable, rotate and
// revoke the tenant's API keys, and read its reports.
//
// It holds no authority of its own: every action is a call to the plugin made
// with the signed-in person's own Vault token, so Vault's templated policy
// decides what each person may see and do. All of those calls live in
// vaultapi.go.
//
// It must never put a key (or a Vault token) in a URL, a log, a cookie, the
// browser's storage or a cache: a new key is rendered in the very answer to
// the form that created it, and every page is sent with Cache-Control:
// no-store. It must never show Vault's error text, which may echo input or
// name internal addresses; errors are said in plain words (plainError).
// Sessions live in memory; their Vault tokens are revoked at sign-out, at
// expiry and at Close.
package console
