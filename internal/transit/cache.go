package transit

import (
	"context"
	"sync"
	"time"
)

// DefaultKeyCacheFor is how long a node serves a transit key's metadata
// from memory before it reads the row again, when no change notification
// told it sooner: the same fallback bound as the policy's polling.
const DefaultKeyCacheFor = 2 * time.Second

// keyCache holds the metadata of the transit keys this node used lately,
// so that an encryption or decryption does not read the key's row: it was
// 18 % of the server's CPU on single-item encrypts (BENCHMARKS.md, #19).
//
// What invalidates an entry: every write this node makes to the key (the
// writer forgets it before it answers, so a rotation acknowledged here is
// used here at once); a change notification of transit_keys from any other
// node or command (ForgetKeys, within the notification's latency); and age
// (cacheFor), the bound when notifications are not available. A fill that
// raced an invalidation is dropped: gen counts invalidations, and a read
// from the store is kept only if none happened while it ran.
type keyCache struct {
	mu  sync.RWMutex
	gen uint64
	m   map[string]cachedKey
}

type cachedKey struct {
	k  TransitKey
	at time.Time
}

// get returns name's cached metadata if it is younger than maxAge.
func (c *keyCache) get(name string, now time.Time, maxAge time.Duration) (TransitKey, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.m[name]
	if !ok || now.Sub(e.at) >= maxAge || now.Before(e.at) {
		return TransitKey{}, false
	}
	return e.k, true
}

// generation returns the invalidation count, to pass to put.
func (c *keyCache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put caches k as read at time at, unless an invalidation happened since
// gen was taken.
func (c *keyCache) put(gen uint64, k TransitKey, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil {
		c.m = make(map[string]cachedKey)
	}
	c.m[k.Name] = cachedKey{k: k, at: at}
}

// counted sets the cached encryption count of name to total, the store's
// count after this node added its own: the count that decides rotation
// must not lag by what this node flushed.
func (c *keyCache) counted(name string, total int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[name]; ok && total > e.k.EncryptionsSinceRotate {
		e.k.EncryptionsSinceRotate = total
		c.m[name] = e
	}
}

// forget drops name (all keys when name is empty) and makes every fill in
// flight be dropped.
func (c *keyCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if name == "" {
		clear(c.m)
		return
	}
	delete(c.m, name)
}

// ForgetKeys drops every cached transit key's metadata, so that the next
// use of each reads its row: call it when a change notification says
// transit_keys changed (another node rotated, configured or deleted a
// key), and when notifications were lost and are back.
func (s *Service) ForgetKeys() { s.cache.forget("") }

// loadCached is load for the cryptographic operations: the key's metadata
// from memory when this node read it less than KeyCacheFor ago and nothing
// invalidated it since, else from the store (and then cached). Key
// administration reads the store itself (load).
func (s *Service) loadCached(ctx context.Context, c Caller, name string) (TransitKey, error) {
	now := s.c.Now()
	if k, ok := s.cache.get(name, now, s.c.KeyCacheFor); ok {
		return k, nil
	}
	return s.load(ctx, c, name)
}
