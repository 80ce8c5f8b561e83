package verifier

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
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

func appendField(b []byte, name string, first bool) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendVerifyResponse renders a verifyResponse exactly as encoding/json would.
func appendVerifyResponse(b []byte, r *verifyResponse) []byte {
	b = append(b, `{"valid":`...)
	b = strconv.AppendBool(b, r.Valid)
	b = appendField(b, "code", false)
	b = appendString(b, string(r.Code))
	b = appendField(b, "key_id", false)
	b = appendString(b, r.KeyID)
	b = appendField(b, "name", false)
	b = appendString(b, r.Name)
	b = appendField(b, "role", false)
	b = appendString(b, r.Role)
	b = appendField(b, "workspace", false)
	b = appendString(b, r.Workspace)
	b = appendField(b, "permissions", false)
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
	b = appendField(b, "expires_at", false)
	if r.ExpiresAt == nil {
		b = append(b, "null"...)
	} else {
		b = appendTime(b, *r.ExpiresAt)
	}
	if len(r.Metadata) > 0 {
		b = appendField(b, "metadata", false)
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
	b = appendField(b, "request_id", false)
	b = appendString(b, l.RequestID)
	b = appendField(b, "endpoint", false)
	b = appendString(b, l.Endpoint)
	if l.KeyID != "" {
		b = appendField(b, "key_id", false)
		b = appendString(b, l.KeyID)
	}
	if l.Name != "" {
		b = appendField(b, "name", false)
		b = appendString(b, l.Name)
	}
	b = appendField(b, "code", false)
	b = appendString(b, l.Code)
	if l.Workspace != "" {
		b = appendField(b, "workspace", false)
		b = appendString(b, l.Workspace)
	}
	if l.ClientIP != "" {
		b = appendField(b, "client_ip", false)
		b = appendString(b, l.ClientIP)
	}
	b = appendField(b, "latency_ms", false)
	b = strconv.AppendFloat(b, l.LatencyMS, 'f', -1, 64)
	return append(b, '}', '\n')
}
