package verifier

import (
	"unicode/utf8"

	"github.com/vault-apikeys/vault-apikeys/verdict"
)

// The hot path reads a verify body without encoding/json's reflection when the
// body has the shape every client sends: one object whose members are "key",
// "tenant", "workspace" and "client_ip" with plain strings and "permissions"
// with an array of plain strings, each member once, JSON white space between.
// A plain string has no escape, no control character and valid UTF-8, so its
// bytes are its value. Anything else (escapes, null, other or repeated
// members, numbers, nesting) is left to encoding/json, which then decides
// alone: the fast path never answers differently from it (FuzzDecodeVerifyFast).

// Members of a verify body, as bits of the set of members already read.
const (
	memberKey = 1 << iota
	memberTenant
	memberWorkspace
	memberPermissions
	memberClientIP
)

// decodeVerifyFast parses body when it has the common shape; ok is false when
// encoding/json must decide instead.
func decodeVerifyFast(body []byte) (req verdict.VerifyRequest, ok bool) {
	// One copy of the body backs every string of the request (the caller
	// reuses body's buffer).
	p := fastParser{s: string(body)}
	p.space()
	if !p.byte('{') {
		return req, false
	}
	p.space()
	seen := 0
	if p.byte('}') {
		return req, p.end()
	}
	for {
		name, ok := p.str()
		if !ok {
			return req, false
		}
		p.space()
		if !p.byte(':') {
			return req, false
		}
		p.space()
		var bit int
		var dst *string
		switch name {
		case "key":
			bit, dst = memberKey, &req.Key
		case "tenant":
			bit, dst = memberTenant, &req.Tenant
		case "workspace":
			bit, dst = memberWorkspace, &req.Workspace
		case "client_ip":
			bit, dst = memberClientIP, &req.ClientIP
		case "permissions":
			bit = memberPermissions
		default:
			return req, false
		}
		if seen&bit != 0 {
			return req, false
		}
		seen |= bit
		if dst != nil {
			if *dst, ok = p.str(); !ok {
				return req, false
			}
		} else if req.Permissions, ok = p.strings(); !ok {
			return req, false
		}
		p.space()
		if p.byte('}') {
			return req, p.end()
		}
		if !p.byte(',') {
			return req, false
		}
		p.space()
	}
}

// fastParser reads s from i on; every method reports false rather than guess.
type fastParser struct {
	s string
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c when it is next.
func (p *fastParser) byte(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// end reports whether only white space follows.
func (p *fastParser) end() bool {
	p.space()
	return p.i == len(p.s)
}

// str reads a plain string (see above) and returns its value.
func (p *fastParser) str() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	ascii := true
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			v := p.s[start:p.i]
			p.i++
			if !ascii && !utf8.ValidString(v) {
				return "", false // encoding/json would replace bytes
			}
			return v, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		p.i++
	}
	return "", false
}

// strings reads an array of plain strings; [] is an empty, non-nil slice, as
// encoding/json makes it.
func (p *fastParser) strings() ([]string, bool) {
	if !p.byte('[') {
		return nil, false
	}
	out := []string{}
	p.space()
	if p.byte(']') {
		return out, true
	}
	for {
		v, ok := p.str()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		p.space()
		if p.byte(']') {
			return out, true
		}
		if !p.byte(',') {
			return nil, false
		}
		p.space()
	}
}
