package backend

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vault-apikeys/vault-apikeys/token"
)

// Limits on operator input. They keep records small and listings readable.
const (
	maxNameLen        = 128
	maxDescriptionLen = 1024
	maxMetadataPairs  = 32
	maxMetadataKeyLen = 128
	maxMetadataValLen = 512
	maxPermissions    = 64
	maxCIDRs          = 64
	maxWorkspaceGlobs = 64
)

var (
	nameRe       = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$`)
	workspaceRe  = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$`)
	permissionRe = regexp.MustCompile(`^(?:\*|[A-Za-z0-9_.-]+(?::(?:\*|[A-Za-z0-9_.-]+))+)$`)
	metaKeyRe    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	globRe       = regexp.MustCompile(`^[A-Za-z0-9._*?\[\]-]{1,64}$`)
)

// validName checks a key or role name and says what a good one looks like.
func validName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is required", kind)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%s name is %d characters long; the limit is %d", kind, len(name), maxNameLen)
	}
	if looksLikeKey(name) {
		// Names are echoed in messages, listings and audit logs: a pasted key
		// must not become one.
		return fmt.Errorf("%s name looks like an API key; a name must not be a secret (revoke that key if it leaked)", kind)
	}
	if !nameRe.MatchString(name) {
		return fmt.Errorf("%s name %q is invalid: use letters, digits, '.', '_' and '-', starting and ending with a letter or digit", kind, printable(name))
	}
	return nil
}

func validWorkspace(ws string) error {
	if !workspaceRe.MatchString(ws) {
		return fmt.Errorf("workspace %q is invalid: use up to 64 letters, digits, '.', '_' and '-', starting and ending with a letter or digit", printable(ws))
	}
	return nil
}

func validPermissions(perms []string) error {
	if len(perms) == 0 {
		return fmt.Errorf("permissions must not be empty: list actions such as clusters:read, or * for all")
	}
	if len(perms) > maxPermissions {
		return fmt.Errorf("at most %d permissions are allowed", maxPermissions)
	}
	for _, p := range perms {
		if len(p) > 128 || !permissionRe.MatchString(p) {
			return fmt.Errorf("permission %q is invalid: use resource:action (e.g. clusters:read), resource:*, or *", printable(p))
		}
	}
	return nil
}

func validGlobs(globs []string) error {
	if len(globs) > maxWorkspaceGlobs {
		return fmt.Errorf("at most %d allowed_workspaces are allowed", maxWorkspaceGlobs)
	}
	for _, g := range globs {
		if !globRe.MatchString(g) {
			return fmt.Errorf("allowed_workspaces entry %q is invalid: use workspace names or globs such as dev-* (or * for tenant-wide)", printable(g))
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("allowed_workspaces entry %q is not a valid glob: %v", printable(g), err)
		}
	}
	return nil
}

// normalizeCIDRs parses each entry as a CIDR (or a bare address) and returns the
// canonical forms.
func normalizeCIDRs(in []string) ([]string, error) {
	if len(in) > maxCIDRs {
		return nil, fmt.Errorf("at most %d allowed_cidrs are allowed", maxCIDRs)
	}
	out := make([]string, 0, len(in))
	for _, c := range in {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked().String())
			continue
		}
		if a, err := netip.ParseAddr(c); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()).String())
			continue
		}
		return nil, fmt.Errorf("allowed_cidrs entry %q is not a CIDR block such as 10.0.0.0/8 or 2001:db8::/32", printable(c))
	}
	return out, nil
}

func validDescription(d string) error {
	if len(d) > maxDescriptionLen {
		return fmt.Errorf("description is %d bytes long; the limit is %d", len(d), maxDescriptionLen)
	}
	if !utf8.ValidString(d) || strings.IndexFunc(d, isControl) >= 0 {
		return fmt.Errorf("description must be UTF-8 text without control characters")
	}
	return nil
}

func validMetadata(m map[string]string) error {
	if len(m) > maxMetadataPairs {
		return fmt.Errorf("metadata has %d entries; the limit is %d", len(m), maxMetadataPairs)
	}
	for k, v := range m {
		if !metaKeyRe.MatchString(k) {
			return fmt.Errorf("metadata key %q is invalid: use up to %d letters, digits, '.', '_' and '-'", printable(k), maxMetadataKeyLen)
		}
		if len(v) > maxMetadataValLen {
			return fmt.Errorf("metadata value for %q is %d bytes long; the limit is %d", k, len(v), maxMetadataValLen)
		}
		if !utf8.ValidString(v) || strings.IndexFunc(v, isControl) >= 0 {
			return fmt.Errorf("metadata value for %q must be UTF-8 text without control characters", k)
		}
	}
	return nil
}

func isControl(r rune) bool { return unicode.IsControl(r) }

// keyIDError says why id is not a key_id without quoting it: a full key pasted
// where a key_id belongs would otherwise be echoed, secret included, into CLI
// output and CI logs.
func keyIDError(field, id string) error {
	return fmt.Errorf("%s is not a key_id: a key_id is %d base62 characters (letters and digits); got %d characters", field, token.KeyIDLen, len(id))
}

// looksLikeKey reports whether s holds something shaped like an API key (any
// prefix, checksum right or mistyped): such a value may carry a secret.
func looksLikeKey(s string) bool {
	const rest = 1 + token.KeyIDLen + 1 + token.SecretLen + token.ChecksumLen
	for i := 0; i+2+rest <= len(s); i++ {
		for p := 2; p <= 10 && i+p+rest <= len(s); p++ {
			if _, err := token.Parse(s[i : i+p+rest]); err == nil || errors.Is(err, token.ErrChecksum) {
				return true
			}
		}
	}
	return false
}

// printable shortens and escapes user input quoted in an error message. A value
// holding an API key is never quoted.
func printable(s string) string {
	if looksLikeKey(s) {
		return "(a value that looks like an API key, not shown)"
	}
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// nameSegment matches one non-empty path segment; the handler validates it so a
// bad name gets a clear message instead of "unsupported path".
func nameSegment(field string) string {
	return `(?P<` + field + `>[^/]+)$`
}
