package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// session is one signed-in person. It lives only in this process's memory: a
// restart signs everyone out (their Vault tokens then expire on their own TTL).
type session struct {
	id       string
	csrf     string
	token    string // the person's Vault token; never logged, never sent to the browser
	user     string // display name
	tenant   string
	created  time.Time
	lastSeen time.Time
	expires  time.Time // absolute expiry: the max lifetime or the token's TTL
	flash    string    // a one-time notice for the next page ("API key disabled")
}

// randomID is 256 bits from crypto/rand, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // unreachable on supported systems
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sameSecret compares two secrets in constant time; an empty one never matches.
func sameSecret(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// sessions is the in-memory store. Expired sessions are removed by get and
// by sweep; onExpire gets the Vault token of each so it can be revoked.
type sessions struct {
	mu       sync.Mutex
	m        map[string]*session
	idle     time.Duration
	absolute time.Duration
	now      func() time.Time
	onExpire func(token string)
}

func (s *sessions) create(token, user, tenant string, tokenTTL time.Duration) *session {
	now := s.now()
	sess := &session{id: randomID(), csrf: randomID(), token: token, user: user, tenant: tenant,
		created: now, lastSeen: now, expires: now.Add(s.absolute)}
	if tokenTTL > 0 && now.Add(tokenTTL).Before(sess.expires) {
		sess.expires = now.Add(tokenTTL)
	}
	s.mu.Lock()
	s.m[sess.id] = sess
	s.mu.Unlock()
	return sess
}

// get answers a live session and marks it seen; an expired one is removed and
// its token handed to onExpire.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	now := s.now()
	s.mu.Lock()
	sess := s.m[id]
	if sess == nil {
		s.mu.Unlock()
		return nil
	}
	if s.expired(sess, now) {
		delete(s.m, id)
		s.mu.Unlock()
		s.onExpire(sess.token)
		return nil
	}
	sess.lastSeen = now
	snapshot := *sess
	s.mu.Unlock()
	return &snapshot
}

func (s *sessions) expired(sess *session, now time.Time) bool {
	return now.Sub(sess.lastSeen) > s.idle || !now.Before(sess.expires)
}

// remove ends a session and answers its token ("" when there was none).
func (s *sessions) remove(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return ""
	}
	delete(s.m, id)
	return sess.token
}

// setFlash stores a notice for the session's next page; takeFlash reads it once.
func (s *sessions) setFlash(id, msg string) {
	s.mu.Lock()
	if sess := s.m[id]; sess != nil {
		sess.flash = msg
	}
	s.mu.Unlock()
}

func (s *sessions) takeFlash(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[id]
	if sess == nil {
		return ""
	}
	msg := sess.flash
	sess.flash = ""
	return msg
}

// sweep removes every expired session and hands their tokens to onExpire.
func (s *sessions) sweep() {
	now := s.now()
	var tokens []string
	s.mu.Lock()
	for id, sess := range s.m {
		if s.expired(sess, now) {
			delete(s.m, id)
			tokens = append(tokens, sess.token)
		}
	}
	s.mu.Unlock()
	for _, t := range tokens {
		s.onExpire(t)
	}
}

// drain removes every session (shutdown) and answers their tokens.
func (s *sessions) drain() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tokens []string
	for id, sess := range s.m {
		delete(s.m, id)
		tokens = append(tokens, sess.token)
	}
	return tokens
}

// Tenant and User are for templates (their fields are unexported so that the
// token can never be reached from one).
func (s *session) Tenant() string { return s.tenant }

func (s *session) User() string { return s.user }
