package transit

import (
	"testing"
	"time"
)

// TestEncryptReadsTheKeyRowOnce: single-item encryptions and decryptions
// are served from memory once the key was read, not from the store each.
func TestEncryptReadsTheKeyRowOnce(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	mustCreate(t, n, "k", KeySpec{})
	ct := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0]
	before := f.ms.reads.Load()
	for range 50 {
		mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})
		mustDecrypt(t, n, "k", ct.Ciphertext, "", "x")
	}
	if got := f.ms.reads.Load() - before; got != 0 {
		t.Fatalf("100 calls read the key row %d times, want 0", got)
	}
	// Past the bound without any notification, the row is read again.
	f.clock.Advance(DefaultKeyCacheFor)
	mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})
	if got := f.ms.reads.Load() - before; got != 1 {
		t.Fatalf("after %v the key row was read %d times, want 1", DefaultKeyCacheFor, got)
	}
}

// TestRotationHereEncryptsAtOnce: once this node acknowledged a rotation,
// its next encryption uses the new version, with no notification at all.
func TestRotationHereEncryptsAtOnce(t *testing.T) {
	f := newFixture(t)
	n := f.node()
	f.ms.silent.Store(true)
	mustCreate(t, n, "k", KeySpec{})
	if v := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 1 {
		t.Fatalf("v%d", v)
	}
	if _, err := n.Rotate(ctx, caller(), "k"); err != nil {
		t.Fatal(err)
	}
	if v := mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 2 {
		t.Fatalf("encrypted under v%d after this node rotated to v2", v)
	}
	if _, err := n.Configure(ctx, caller(), "k", KeyConfig{MinDecryptionVersion: u32(2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Decrypt(ctx, caller(), "k", []CiphertextItem{{Ciphertext: mustEncrypt(t, n, "k", Item{Plaintext: enc("y")})[0].Ciphertext}}); err != nil {
		t.Fatal(err)
	}
}

// TestRotationElsewhereWithoutNotificationsWithinTheBound: a node that
// hears of no change (its feed is down) encrypts under the version it
// cached for at most KeyCacheFor after another node's rotation, then
// under the new one; with the feed up it is the new one at once
// (TestNodeWithAStaleKeyringNeverEncryptsBelowTheMinimum).
func TestRotationElsewhereWithoutNotificationsWithinTheBound(t *testing.T) {
	f := newFixture(t)
	a := f.node()
	b := f.node(func(c *Config) { c.KeyCacheFor = 5 * time.Second })
	mustCreate(t, a, "k", KeySpec{})
	mustEncrypt(t, b, "k", Item{Plaintext: enc("x")}) // b caches v1
	f.ms.silent.Store(true)
	if _, err := a.Rotate(ctx, caller(), "k"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(4 * time.Second)
	if v := mustEncrypt(t, b, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 1 {
		t.Fatalf("v%d: the bound is not what the cache does (the test is wrong)", v)
	}
	f.clock.Advance(time.Second)
	if v := mustEncrypt(t, b, "k", Item{Plaintext: enc("x")})[0].KeyVersion; v != 2 {
		t.Fatalf("node b still encrypted under v%d %v after a rotation to v2", v, 5*time.Second)
	}
}

// TestCacheDropsAFillThatRacedAChange: a row read before a change and
// cached after it would outlive the change; it is dropped instead.
func TestCacheDropsAFillThatRacedAChange(t *testing.T) {
	var c keyCache
	now := time.Now()
	gen := c.generation()
	c.forget("k") // the change lands while the read is in flight
	c.put(gen, TransitKey{Name: "k", LatestVersion: 1}, now)
	if _, ok := c.get("k", now, time.Hour); ok {
		t.Fatal("a fill that raced a change was kept")
	}
	c.put(c.generation(), TransitKey{Name: "k", LatestVersion: 2}, now)
	if k, ok := c.get("k", now, time.Hour); !ok || k.LatestVersion != 2 {
		t.Fatalf("fill after the change: %+v %v", k, ok)
	}
	c.forget("")
	if _, ok := c.get("k", now, time.Hour); ok {
		t.Fatal("ForgetKeys kept an entry")
	}
}

// TestCountDecidesRotationWithoutLag: this node's flushed count lands in
// its cached metadata, so the bound on encryptions per version holds with
// the key served from memory.
func TestCountDecidesRotationWithoutLag(t *testing.T) {
	f := newFixture(t)
	n := f.node(func(c *Config) { c.RotateAfter, c.FlushEvery = 10, 1 })
	mustCreate(t, n, "k", KeySpec{})
	per := map[uint32]int{}
	for range 25 {
		per[mustEncrypt(t, n, "k", Item{Plaintext: enc("x")})[0].KeyVersion]++
	}
	for v, c := range per {
		if c > 10 {
			t.Fatalf("version %d encrypted %d values, bound is 10: %v", v, c, per)
		}
	}
}
