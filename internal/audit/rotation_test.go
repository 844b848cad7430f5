package audit

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
)

// rotatingKeys is a KeySource whose keys a test rotates, keeping every
// version for the verifiers, as the keyring does.
type rotatingKeys struct {
	mu      sync.Mutex
	hmac    map[uint32][]byte
	sign    map[uint32]ed25519.PrivateKey
	hmacCur uint32
	signCur uint32
	fail    error
	calls   atomic.Int64
}

func newRotatingKeys() *rotatingKeys {
	k := &rotatingKeys{hmac: map[uint32][]byte{}, sign: map[uint32]ed25519.PrivateKey{}}
	k.rotateHMAC()
	k.rotateSigning()
	return k
}

// testSeed returns 32 bytes that differ by label and version.
func testSeed(label string, v uint32) []byte {
	return []byte(fmt.Sprintf("%-28s%04d", label, v))
}

func (k *rotatingKeys) rotateHMAC() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hmacCur++
	k.hmac[k.hmacCur] = testSeed("hmac", k.hmacCur)
}

func (k *rotatingKeys) rotateSigning() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.signCur++
	k.sign[k.signCur] = ed25519.NewKeyFromSeed(testSeed("signing", k.signCur))
}

// set makes the given versions current (a test of versions going back).
func (k *rotatingKeys) set(hmacV, signV uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hmacCur, k.signCur = hmacV, signV
}

func (k *rotatingKeys) setFail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail = err
}

func (k *rotatingKeys) CurrentKeys(context.Context) (Keys, error) {
	k.calls.Add(1)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail != nil {
		return Keys{}, k.fail
	}
	return Keys{HMACVersion: k.hmacCur, HMACKey: k.hmac[k.hmacCur],
		SigningVersion: k.signCur, SigningKey: k.sign[k.signCur]}, nil
}

// lookup returns every version so far, for Verify.
func (k *rotatingKeys) lookup() KeyVersions {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := KeyVersions{HMAC: map[uint32][]byte{}, Public: map[uint32]ed25519.PublicKey{}}
	for v, key := range k.hmac {
		out.HMAC[v] = key
	}
	for v, key := range k.sign {
		out.Public[v] = key.Public().(ed25519.PublicKey)
	}
	return out
}

// failingKeys is a KeySource that always fails.
type failingKeys struct{ err error }

func (f failingKeys) CurrentKeys(context.Context) (Keys, error) { return Keys{}, f.err }

// rotatedLog writes, on node n1 with a checkpoint every 10 events and a
// file sink: events 1-15 under HMAC v1, an HMAC rotation, events 16-25
// under v2, a signing key rotation, events 26-32 (the first of them sealed
// by a v1 checkpoint at 25), and the final checkpoint on Close.
func rotatedLog(t *testing.T) (*memStore, *rotatingKeys, string) {
	t.Helper()
	st := newMemStore()
	keys := newRotatingKeys()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := NewJSONLFile(path, -1)
	if err != nil {
		t.Fatal(err)
	}
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: 10, RequiredSinks: []Sink{sink}})
	logN(t, w, 15)
	keys.rotateHMAC()
	logN(t, w, 10)
	keys.rotateSigning()
	logN(t, w, 7)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, keys, path
}

func TestChainSpansKeyRotations(t *testing.T) {
	st, keys, path := rotatedLog(t)
	for _, e := range st.events["n1"] {
		want := uint32(1)
		if e.Seq > 15 {
			want = 2
		}
		if e.KeyVersion != want {
			t.Fatalf("event %s: key version %d, want %d", e.ID, e.KeyVersion, want)
		}
	}
	var got []string
	for _, c := range st.cps["n1"] {
		got = append(got, fmt.Sprintf("%d@v%d", c.Seq, c.KeyVersion))
	}
	// 25@v1 seals the events the old signing key had not signed yet.
	if want := []string{"10@v1", "20@v1", "25@v1", "30@v2", "32@v2"}; !slices.Equal(got, want) {
		t.Fatalf("checkpoints %v, want %v", got, want)
	}
	want := Report{Nodes: 1, Events: 32, Checkpoints: 5}
	rep, err := Verify(context.Background(), st, keys.lookup())
	if err != nil || rep != want {
		t.Fatalf("Verify = %+v, %v; want %+v", rep, err, want)
	}
	rep, err = VerifyFile(context.Background(), keys.lookup(), path)
	if err != nil || rep != want {
		t.Fatalf("VerifyFile = %+v, %v; want %+v", rep, err, want)
	}
	// The keys of version 1 alone do not verify the later events.
	v1 := keys.lookup()
	delete(v1.HMAC, 2)
	delete(v1.Public, 2)
	var verr *VerifyError
	if _, err := Verify(context.Background(), st, v1); !errors.As(err, &verr) || verr.EventID != "n1:16" ||
		!strings.Contains(verr.Reason, "version 2") {
		t.Fatalf("Verify without version 2 = %v, want a finding naming n1:16", err)
	}
}

func TestVerifyDetectsTamperingAcrossRotations(t *testing.T) {
	keys := newRotatingKeys()
	keys.rotateHMAC()
	keys.rotateSigning()
	v1HMAC := keys.hmac[1]
	v1Sign, v2Sign := keys.sign[1], keys.sign[2]
	tests := []struct {
		name       string
		tamper     func(ev []Event, cps []Checkpoint)
		wantSeq    uint64
		wantReason string
	}{
		{
			name:       "fail/event after the rotation edited",
			tamper:     func(ev []Event, _ []Checkpoint) { ev[17].Reason = "nothing to see" },
			wantSeq:    18,
			wantReason: "edited",
		},
		{
			name:       "fail/first event of the new version relabelled to the old one",
			tamper:     func(ev []Event, _ []Checkpoint) { ev[15].KeyVersion = 1 },
			wantSeq:    16,
			wantReason: "edited",
		},
		{
			name:       "fail/later event relabelled to the old version",
			tamper:     func(ev []Event, _ []Checkpoint) { ev[19].KeyVersion = 1 },
			wantSeq:    20,
			wantReason: "went back",
		},
		{
			name:       "fail/old event relabelled to the new version",
			tamper:     func(ev []Event, _ []Checkpoint) { ev[4].KeyVersion = 2 },
			wantSeq:    5,
			wantReason: "edited",
		},
		{
			name:       "fail/event relabelled to a version that does not exist",
			tamper:     func(ev []Event, _ []Checkpoint) { ev[22].KeyVersion = 9 },
			wantSeq:    23,
			wantReason: "does not exist",
		},
		{
			name: "fail/event forged after the rotation with the old (leaked) key",
			tamper: func(ev []Event, _ []Checkpoint) {
				ev[20].Action, ev[20].KeyVersion = "delete", 1
				ev[20].Hash, _ = ComputeHash(v1HMAC, &ev[20])
			},
			wantSeq:    21,
			wantReason: "went back",
		},
		{
			name: "fail/checkpoint of the new key signed by the old one",
			tamper: func(_ []Event, cps []Checkpoint) {
				SignCheckpoint(v1Sign, &cps[3]) // 30@v2
			},
			wantSeq:    30,
			wantReason: "signature",
		},
		{
			name: "fail/checkpoint of the old key signed by the new one",
			tamper: func(_ []Event, cps []Checkpoint) {
				SignCheckpoint(v2Sign, &cps[1]) // 20@v1
			},
			wantSeq:    20,
			wantReason: "signature",
		},
		{
			name:       "fail/checkpoint relabelled to the new version",
			tamper:     func(_ []Event, cps []Checkpoint) { cps[2].KeyVersion = 2 }, // 25@v1
			wantSeq:    25,
			wantReason: "signature",
		},
		{
			name: "fail/checkpoint re-signed and relabelled with the old (leaked) key",
			tamper: func(_ []Event, cps []Checkpoint) {
				cps[4].KeyVersion = 1 // 32@v2
				SignCheckpoint(v1Sign, &cps[4])
			},
			wantSeq:    32,
			wantReason: "went back",
		},
		{
			name:       "fail/checkpoint naming a version that does not exist",
			tamper:     func(_ []Event, cps []Checkpoint) { cps[3].KeyVersion = 7 },
			wantSeq:    30,
			wantReason: "does not exist",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, keys, _ := rotatedLog(t)
			ev, cps := slices.Clone(st.events["n1"]), slices.Clone(st.cps["n1"])
			tt.tamper(ev, cps)
			st.events["n1"], st.cps["n1"] = ev, cps
			_, err := Verify(context.Background(), st, keys.lookup())
			var verr *VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if verr.Node != "n1" || verr.Seq != tt.wantSeq || verr.EventID != EventID("n1", tt.wantSeq) ||
				!strings.Contains(verr.Reason, tt.wantReason) {
				t.Fatalf("Verify named %s seq %d (%s), want seq %d and %q", verr.EventID, verr.Seq, verr.Reason,
					tt.wantSeq, tt.wantReason)
			}
		})
	}
}

// TestVerifyFileDetectsAnEditedKeyVersion edits an event's key version in
// the file sink's copy.
func TestVerifyFileDetectsAnEditedKeyVersion(t *testing.T) {
	_, keys, path := rotatedLog(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	edited := false
	for i, l := range lines {
		if strings.Contains(l, `"id":"n1:18"`) {
			lines[i], edited = strings.Replace(l, `"key_version":2`, `"key_version":3`, 1), true
		}
	}
	if !edited {
		t.Fatal("no line of event n1:18")
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyFile(context.Background(), keys.lookup(), path)
	var verr *VerifyError
	if !errors.As(err, &verr) || verr.EventID != "n1:18" || !strings.Contains(verr.Reason, "does not exist") {
		t.Fatalf("VerifyFile = %v, want a finding naming n1:18", err)
	}
}

// TestOldLogVerifiesUnchanged: a log without key versions (as written
// before audit keys could rotate) verifies with version 1 of the keys, and
// a writer continues it, then rotates.
func TestOldLogVerifiesUnchanged(t *testing.T) {
	st := buildLog(t, 20, 10, "n1")
	for i := range st.events["n1"] {
		st.events["n1"][i].KeyVersion = 0 // as decoded from an old body
	}
	for i := range st.cps["n1"] {
		st.cps["n1"][i].KeyVersion = 0
	}
	if rep, err := Verify(context.Background(), st, testLookup); err != nil || rep.Events != 20 {
		t.Fatalf("Verify(old log) = %+v, %v", rep, err)
	}
	keys := newRotatingKeys()
	keys.hmac[1], keys.sign[1] = testHMACKey, testSignKey
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: 10})
	logN(t, w, 3)
	keys.rotateHMAC()
	keys.rotateSigning()
	logN(t, w, 3)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), st, keys.lookup()); err != nil || rep.Events != 26 || rep.Checkpoints != 4 {
		t.Fatalf("Verify(old log continued) = %+v, %v", rep, err)
	}
}

// TestWriterAsksForKeysOncePerBatch: the key source is on the commit path
// once per batch, not once per event.
func TestWriterAsksForKeysOncePerBatch(t *testing.T) {
	st := newMemStore()
	st.delay = 2 * time.Millisecond
	keys := newRotatingKeys()
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: -1})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 25 {
				if err := w.Log(context.Background(), sampleEvent(i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	appends := st.appends.Load()
	if got := keys.calls.Load(); got != appends+1 || appends >= 200 {
		t.Fatalf("%d key lookups for %d appends of 200 events; want one per append and one at start", got, appends)
	}
}

// TestWriterFailsClosedWithoutKeys: a key source that fails fails the
// batch like a store failure; nothing is written unchained, and the writer
// recovers once the keys are back.
func TestWriterFailsClosedWithoutKeys(t *testing.T) {
	st := newMemStore()
	keys := newRotatingKeys()
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: 5})
	logN(t, w, 3)
	keys.setFail(errors.New("keyring: store unreachable"))
	err := w.Log(context.Background(), sampleEvent(9))
	if coffer.ErrorCode(err) != coffer.EUNAVAILABLE {
		t.Fatalf("Log without keys = %v, want EUNAVAILABLE", err)
	}
	if n := len(st.events["n1"]); n != 3 {
		t.Fatalf("%d events stored, want 3", n)
	}
	if w.Healthy() == nil {
		t.Fatal("writer healthy without keys")
	}
	keys.setFail(nil)
	keys.rotateHMAC()
	logN(t, w, 4)
	if w.Healthy() != nil {
		t.Fatalf("writer unhealthy after the keys came back: %v", w.Healthy())
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), st, keys.lookup()); err != nil || rep.Events != 8 { // 3, the outage, 4
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// TestWriterRefusesKeyVersionsGoingBack: a key source that hands out an
// older version than the log holds fails the batch (running) or the start
// (restarted), as Verify would refuse the log.
func TestWriterRefusesKeyVersionsGoingBack(t *testing.T) {
	st := newMemStore()
	keys := newRotatingKeys()
	keys.rotateHMAC()
	keys.rotateSigning()
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: 2})
	logN(t, w, 2)
	for _, tc := range []struct{ hmacV, signV uint32 }{{1, 2}, {2, 1}} {
		keys.set(tc.hmacV, tc.signV)
		if err := w.Log(context.Background(), sampleEvent(1)); coffer.ErrorCode(err) != coffer.EUNAVAILABLE {
			t.Fatalf("Log with versions %v = %v, want EUNAVAILABLE", tc, err)
		}
	}
	keys.set(2, 2)
	logN(t, w, 1)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ hmacV, signV uint32 }{{1, 2}, {2, 1}} {
		keys.set(tc.hmacV, tc.signV)
		if w, err := NewWriter(context.Background(), st, WriterConfig{Node: "n1", Keys: keys, Logger: quietLogger}); err == nil {
			_ = w.Close(context.Background())
			t.Fatalf("NewWriter with versions %v started on a log of version 2", tc)
		}
	}
	keys.set(2, 2)
	w2 := newTestWriter(t, st, WriterConfig{Keys: keys})
	logN(t, w2, 1)
	if err := w2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), st, keys.lookup()); err != nil || rep.Events != 5 { // 2, the outage, 1, 1
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// TestWriterRefusesASigningKeyOlderThanItHolds: after a signing rotation
// the writer holds the new key even before it signed anything with it; a
// source that then goes back to the old one is refused, else the next
// rotation's seal and the checkpoints after it would go back and forth.
func TestWriterRefusesASigningKeyOlderThanItHolds(t *testing.T) {
	st := newMemStore()
	keys := newRotatingKeys()
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: -1})
	logN(t, w, 1)
	keys.rotateSigning()
	logN(t, w, 1) // seals event 1 under v1; event 2 not checkpointed yet
	keys.set(1, 1)
	if err := w.Log(context.Background(), sampleEvent(3)); coffer.ErrorCode(err) != coffer.EUNAVAILABLE {
		t.Fatalf("Log with the old signing key = %v, want EUNAVAILABLE", err)
	}
	keys.set(1, 2)
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), st, keys.lookup()); err != nil || rep.Events != 3 || rep.Checkpoints != 2 { // 2 and the outage
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

// TestSigningRotationAtACheckpoint: when nothing was written since the last
// checkpoint there is nothing to seal, and no second checkpoint at the same
// seq (the store would refuse it); on Close the seal and the final
// checkpoint are one checkpoint under the old key.
func TestSigningRotationAtACheckpoint(t *testing.T) {
	st := newMemStore()
	keys := newRotatingKeys()
	w := newTestWriter(t, st, WriterConfig{Keys: keys, CheckpointEvery: 5})
	logN(t, w, 5)
	keys.rotateSigning()
	logN(t, w, 2)
	keys.rotateSigning()
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range st.cps["n1"] {
		got = append(got, fmt.Sprintf("%d@v%d", c.Seq, c.KeyVersion))
	}
	if want := []string{"5@v1", "7@v2"}; !slices.Equal(got, want) {
		t.Fatalf("checkpoints %v, want %v", got, want)
	}
	if rep, err := Verify(context.Background(), st, keys.lookup()); err != nil || rep.Checkpoints != 2 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestKeysNeverFormatTheirBytes(t *testing.T) {
	k := Keys{HMACVersion: 3, HMACKey: testHMACKey, SigningVersion: 2, SigningKey: testSignKey}
	out := fmt.Sprintf("%v %+v %#v %s", k, k, k, k)
	for _, secret := range []string{string(testHMACKey), hex.EncodeToString(testHMACKey), hex.EncodeToString(testSignKey.Seed()), "48 49 50"} {
		if strings.Contains(out, secret) {
			t.Fatalf("formatted keys hold key bytes: %s", out)
		}
	}
	if !strings.Contains(out, "hmac v3") {
		t.Fatalf("formatted keys: %s", out)
	}
}
