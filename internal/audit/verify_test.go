package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildLog writes n events on each node through a Writer with a checkpoint
// every `every` events and a final one on Close.
func buildLog(t testing.TB, n, every int, nodes ...string) *memStore {
	t.Helper()
	st := newMemStore()
	for _, node := range nodes {
		w, err := NewWriter(context.Background(), st, WriterConfig{
			Node: node, Keys: testKeys, Now: newFakeClock().Now, Logger: quietLogger,
			CheckpointEvery: every, CheckpointInterval: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		logN(t, w, n)
		if err := w.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestVerifyIntactChain(t *testing.T) {
	st := buildLog(t, 2500, 1000, "n1", "n2")
	rep, err := Verify(context.Background(), st, testLookup)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Checkpoints at 1000, 2000 and the final one at 2500, per node.
	want := Report{Nodes: 2, Events: 5000, Checkpoints: 6}
	if rep != want {
		t.Fatalf("report = %+v, want %+v", rep, want)
	}
}

func TestVerifyEmptyStore(t *testing.T) {
	rep, err := Verify(context.Background(), newMemStore(), testLookup)
	if err != nil || rep != (Report{}) {
		t.Fatalf("Verify(empty) = %+v, %v", rep, err)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	otherKey := ed25519.NewKeyFromSeed([]byte("another-seed-another-seed-32byte"))
	tests := []struct {
		name       string
		tamper     func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint)
		hmacKey    []byte
		wantNode   string // n1 when empty
		wantSeq    uint64
		wantID     string
		wantReason string
	}{
		{
			name: "fail/edited field names the edited event",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[20].Reason = "nothing to see"
				return ev, cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "edited",
		},
		{
			name: "fail/edited count names the edited event",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[33].Count = 10000
				return ev, cps
			},
			wantSeq: 34, wantID: "n1:34", wantReason: "edited",
		},
		{
			name: "fail/edited time names the edited event",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[0].Time = ev[0].Time.Add(-time.Second)
				return ev, cps
			},
			wantSeq: 1, wantID: "n1:1", wantReason: "edited",
		},
		{
			name: "fail/rewritten hash names the event",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[20].Hash = ev[21].Hash
				return ev, cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "edited",
		},
		{
			name: "fail/deleted event names the missing seq",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return slices.Delete(ev, 20, 21), cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "missing",
		},
		{
			name: "fail/deleted first event names seq 1",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev[1:], cps
			},
			wantSeq: 1, wantID: "n1:1", wantReason: "missing",
		},
		{
			name: "fail/deleted and renumbered names the first renumbered event",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev = slices.Delete(ev, 20, 21)
				renumber(ev, 20)
				return ev, cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "prev_hash",
		},
		{
			name: "fail/inserted event names the inserted one",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				forged := ev[20]
				forged.Action, forged.Hash = "delete", strings.Repeat("ab", 32)
				return slices.Insert(ev, 20, forged), cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "edited",
		},
		{
			name: "fail/inserted and renumbered names the inserted one",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				forged := ev[20]
				forged.Action, forged.Hash = "delete", strings.Repeat("ab", 32)
				ev = slices.Insert(ev, 20, forged)
				renumber(ev, 21)
				return ev, cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "edited",
		},
		{
			name: "fail/swapped events name the first position",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[20], ev[21] = ev[21], ev[20]
				return ev, cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "reordered",
		},
		{
			name: "fail/swapped and renumbered names the first position",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				ev[20], ev[21] = ev[21], ev[20]
				renumber(ev, 20)
				return ev, cps
			},
			wantSeq: 21, wantID: "n1:21", wantReason: "prev_hash",
		},
		{
			name: "fail/truncated before the last checkpoint names the first missing seq",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				return ev[:45], cps
			},
			wantSeq: 46, wantID: "n1:46", wantReason: "cut off",
		},
		{
			name: "fail/forged checkpoint signature names its seq",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				cps[1].Signature = slices.Clone(cps[1].Signature)
				cps[1].Signature[0] ^= 1
				return ev, cps
			},
			wantSeq: 20, wantID: "n1:20", wantReason: "signature",
		},
		{
			name: "fail/checkpoint signed by another key names its seq",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				SignCheckpoint(otherKey, &cps[2])
				return ev, cps
			},
			wantSeq: 30, wantID: "n1:30", wantReason: "signature",
		},
		{
			name: "fail/edited event and chain rebuilt without the key is caught by the checkpoint",
			tamper: func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) {
				// An attacker who knows the HMAC key rewrites events 11..20
				// and rehashes the chain; the checkpoint at 20 still holds.
				ev[10].Action = "search"
				for i := 10; i < len(ev); i++ {
					ev[i].PrevHash = ev[i-1].Hash
					ev[i].Hash, _ = ComputeHash(testHMACKey, &ev[i])
				}
				return ev, cps
			},
			wantSeq: 20, wantID: "n1:20", wantReason: "checkpoint",
		},
		{
			name:     "fail/wrong HMAC key names the first event",
			tamper:   func(ev []Event, cps []Checkpoint) ([]Event, []Checkpoint) { return ev, cps },
			hmacKey:  []byte("the-wrong-key-the-wrong-key-0000"),
			wantNode: "n0", wantSeq: 1, wantID: "n0:1", wantReason: "edited",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := buildLog(t, 50, 10, "n0", "n1")
			ev, cps := tt.tamper(slices.Clone(st.events["n1"]), slices.Clone(st.cps["n1"]))
			st.events["n1"], st.cps["n1"] = ev, cps
			keys := testLookup
			if tt.hmacKey != nil {
				keys = KeyVersions{HMAC: map[uint32][]byte{1: tt.hmacKey}, Public: testLookup.Public}
			}
			_, err := Verify(context.Background(), st, keys)
			var verr *VerifyError
			if !errors.As(err, &verr) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			wantNode := tt.wantNode
			if wantNode == "" {
				wantNode = "n1"
			}
			if verr.Node != wantNode || verr.Seq != tt.wantSeq || verr.EventID != tt.wantID {
				t.Fatalf("Verify named node %q seq %d id %q (%s), want %s seq %d id %q",
					verr.Node, verr.Seq, verr.EventID, verr.Reason, wantNode, tt.wantSeq, tt.wantID)
			}
			if !strings.Contains(verr.Reason, tt.wantReason) {
				t.Fatalf("reason %q does not mention %q", verr.Reason, tt.wantReason)
			}
		})
	}
}

// TestVerifyCannotSeeTailCutWithItsCheckpoints pins the documented limit:
// cutting the newest events together with every checkpoint over them leaves
// a chain that verifies. The file sink's copy is what catches it.
func TestVerifyCannotSeeTailCutWithItsCheckpoints(t *testing.T) {
	st := buildLog(t, 50, 10, "n1")
	st.events["n1"] = st.events["n1"][:35]
	st.cps["n1"] = st.cps["n1"][:3] // 10, 20, 30
	rep, err := Verify(context.Background(), st, testLookup)
	if err != nil || rep.Events != 35 {
		t.Fatalf("Verify = %+v, %v; the documented limit changed, update doc.go", rep, err)
	}
}

func TestVerifyRefusesBadKeys(t *testing.T) {
	st := buildLog(t, 3, 10, "n1")
	shortPub := KeyVersions{HMAC: testLookup.HMAC, Public: map[uint32]ed25519.PublicKey{1: testPubKey[:10]}}
	if _, err := Verify(context.Background(), st, shortPub); err == nil {
		t.Fatal("Verify accepted a short public key")
	}
	shortHMAC := KeyVersions{HMAC: map[uint32][]byte{1: []byte("short")}, Public: testLookup.Public}
	if _, err := Verify(context.Background(), st, shortHMAC); err == nil {
		t.Fatal("Verify accepted a short HMAC key")
	}
	if _, err := Verify(context.Background(), st, nil); err == nil {
		t.Fatal("Verify ran without keys")
	}
}

// renumber rewrites Seq and ID from index i on, as an attacker would to
// hide a gap or an insertion.
func renumber(ev []Event, i int) {
	for ; i < len(ev); i++ {
		ev[i].Seq = uint64(i + 1)
		ev[i].ID = EventID(ev[i].Node, ev[i].Seq)
	}
}

func BenchmarkVerify100k(b *testing.B) {
	st := buildLog(b, 100_000, 1000, "n1")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep, err := Verify(context.Background(), st, testLookup)
		if err != nil || rep.Events != 100_000 {
			b.Fatalf("Verify = %+v, %v", rep, err)
		}
	}
}

// corruptStore reports the body of one event as undecodable, as a SQL store
// does when a row's JSON was edited.
type corruptStore struct {
	*memStore
	seq uint64
}

func (c corruptStore) ScanAudit(ctx context.Context, node string, after uint64, fn func(Event) error) error {
	return c.memStore.ScanAudit(ctx, node, after, func(e Event) error {
		if e.Seq == c.seq {
			_, err := DecodeStored(node, e.Seq, []byte(`{"id":"x","injected":1}`))
			return err
		}
		return fn(e)
	})
}

func TestVerifyNamesAnUndecodableStoredEvent(t *testing.T) {
	st := buildLog(t, 20, 10, "n1")
	_, err := Verify(context.Background(), corruptStore{st, 7}, testLookup)
	var verr *VerifyError
	if !errors.As(err, &verr) || verr.Seq != 7 || verr.EventID != "n1:7" {
		t.Fatalf("Verify = %v, want a *VerifyError naming n1:7", err)
	}
}
