package auth

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// tokenCache remembers verified tokens by the SHA-256 of the token, so that
// a token presented again costs a hash and a map lookup instead of a
// signature check. It is bounded: once full, each insert evicts the oldest
// insert (a ring of keys). Entries carry the key generation they were
// verified under and are dropped when SetKeys starts a new one.
type tokenCache struct {
	max int // ≤ 0: disabled

	mu   sync.RWMutex
	gen  uint64
	m    map[[sha256.Size]byte]cacheEntry
	ring [][sha256.Size]byte // insertion order; may name entries already gone
	next int                 // the ring slot to overwrite once the ring is full
}

type cacheEntry struct {
	p     *coffer.Principal // never handed out: callers get clones
	until time.Time         // the entry is refused at or after this time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: map[[sha256.Size]byte]cacheEntry{}}
}

// get returns the cached principal for sum if it is still valid at now. An
// entry past its time is removed and reported as a miss, so that the caller
// runs the full verification (and refuses with the precise reason).
func (c *tokenCache) get(sum [sha256.Size]byte, now time.Time) (*coffer.Principal, bool) {
	if c.max <= 0 {
		return nil, false
	}
	c.mu.RLock()
	e, ok := c.m[sum]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	if now.Before(e.until) {
		return e.p, true
	}
	c.mu.Lock()
	if cur, ok := c.m[sum]; ok && cur.p == e.p {
		delete(c.m, sum)
	}
	c.mu.Unlock()
	return nil, false
}

// put caches p for sum until until, unless the keys changed since gen.
func (c *tokenCache) put(sum [sha256.Size]byte, p *coffer.Principal, until time.Time, gen uint64) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return // verified under keys that SetKeys has since replaced
	}
	if _, ok := c.m[sum]; !ok {
		if len(c.ring) < c.max {
			c.ring = append(c.ring, sum)
		} else {
			delete(c.m, c.ring[c.next])
			c.ring[c.next] = sum
			c.next = (c.next + 1) % c.max
		}
	}
	c.m[sum] = cacheEntry{p: p, until: until}
}

// clear empties the cache and starts key generation gen.
func (c *tokenCache) clear(gen uint64) {
	c.mu.Lock()
	c.gen = gen
	c.m = map[[sha256.Size]byte]cacheEntry{}
	c.ring = c.ring[:0]
	c.next = 0
	c.mu.Unlock()
}

// len returns the number of entries, for tests.
func (c *tokenCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
