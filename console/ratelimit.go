package console

import (
	"sync"
	"time"
)

// limiter is a token bucket per key (a username, a client address): burst
// attempts at once, then one per every. Sign-in consults two of them, so
// neither guessing one user's password from many addresses nor many users'
// passwords from one address goes fast.
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	burst   float64
	every   time.Duration
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(burst int, every time.Duration, now func() time.Time) *limiter {
	return &limiter{buckets: map[string]*bucket{}, burst: float64(burst), every: every, now: now}
}

// allow takes one token from key's bucket, or answers false when it is empty.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = l.refilled(b, now)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (l *limiter) refilled(b *bucket, now time.Time) float64 {
	t := b.tokens + float64(now.Sub(b.last))/float64(l.every)
	if t > l.burst {
		t = l.burst
	}
	return t
}

// prune forgets full buckets, so the map holds only recent offenders.
func (l *limiter) prune() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for k, b := range l.buckets {
		if l.refilled(b, now) >= l.burst {
			delete(l.buckets, k)
		}
	}
}
