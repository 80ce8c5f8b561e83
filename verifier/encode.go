package verifier

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// The hot path writes its JSON by appending to pooled buffers instead of going
// through encoding/json's reflection: the response and the audit line of every
// decision. Tests check both against encoding/json.

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return // don't keep outsized buffers
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json does
// (control characters, quote, backslash, <, >, &, U+2028/2029; invalid UTF-8
// becomes U+FFFD).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendField appends `,"name":` (every field but the first of an object).
func appendField(b []byte, name string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// appendStringField appends `,"name":"value"`.
func appendStringField(b []byte, name, value string) []byte {
	return appendString(appendField(b, name), value)
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendVerifyResponse renders a verdict.VerifyResponse exactly as
// encoding/json would.
func appendVerifyResponse(b []byte, r *verdict.VerifyResponse) []byte {
	b = append(b, `{"valid":`...)
	b = strconv.AppendBool(b, r.Valid)
	b = appendStringField(b, "code", string(r.Code))
	b = appendStringField(b, "key_id", r.KeyID)
	if r.Tenant != "" {
		b = appendStringField(b, "tenant", r.Tenant)
	}
	b = appendStringField(b, "name", r.Name)
	b = appendStringField(b, "role", r.Role)
	b = appendStringField(b, "workspace", r.Workspace)
	b = appendField(b, "permissions")
	if r.Permissions == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, p := range r.Permissions {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, p)
		}
		b = append(b, ']')
	}
	b = appendField(b, "expires_at")
	if r.ExpiresAt == nil {
		b = append(b, "null"...)
	} else {
		b = appendTime(b, *r.ExpiresAt)
	}
	if len(r.Metadata) > 0 {
		b = appendField(b, "metadata")
		b = append(b, '{')
		for i, k := range slices.Sorted(maps.Keys(r.Metadata)) {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, r.Metadata[k])
		}
		b = append(b, '}')
	}
	return append(b, '}', '\n')
}

// appendAuditLine renders an auditLine exactly as encoding/json would.
func appendAuditLine(b []byte, l *auditLine) []byte {
	b = append(b, `{"time":`...)
	b = appendTime(b, l.Time)
	b = appendStringField(b, "request_id", l.RequestID)
	b = appendStringField(b, "endpoint", l.Endpoint)
	if l.KeyID != "" {
		b = appendStringField(b, "key_id", l.KeyID)
	}
	if l.Tenant != "" {
		b = appendStringField(b, "tenant", l.Tenant)
	}
	if l.Name != "" {
		b = appendStringField(b, "name", l.Name)
	}
	b = appendStringField(b, "code", l.Code)
	if l.Workspace != "" {
		b = appendStringField(b, "workspace", l.Workspace)
	}
	if l.ClientIP != "" {
		b = appendStringField(b, "client_ip", l.ClientIP)
	}
	b = appendField(b, "latency_ms")
	b = strconv.AppendFloat(b, l.LatencyMS, 'f', -1, 64)
	b = appendField(b, "feed_seq")
	b = strconv.AppendUint(b, l.FeedSeq, 10)
	return append(b, '}', '\n')
}
