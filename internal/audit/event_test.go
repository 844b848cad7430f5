package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"testing"
	"time"
)

// vector.json is made by testdata/gen_vector.py, an independent Python
// implementation of the canonical encoding, the chain and the checkpoint
// message.
type vectorFile struct {
	HMACKeyHex           string          `json:"hmac_key_hex"`
	GenesisN1            string          `json:"genesis_n1"`
	Events               json.RawMessage `json:"events"`
	CheckpointMessageHex string          `json:"checkpoint_message_hex"`
	Checkpoint           Checkpoint      `json:"checkpoint"`
	// Rotated is an event and a checkpoint under version 2 of the keys.
	Rotated struct {
		HMACKeyHex           string     `json:"hmac_key_hex"`
		Event                Event      `json:"event"`
		CheckpointMessageHex string     `json:"checkpoint_message_hex"`
		Checkpoint           Checkpoint `json:"checkpoint"`
	} `json:"rotated"`
	// Targeted are events that name their targets (the second form).
	Targeted []struct {
		HMACKeyHex string `json:"hmac_key_hex"`
		Event      Event  `json:"event"`
	} `json:"targeted"`
}

func TestKnownAnswerVector(t *testing.T) {
	b, err := os.ReadFile("testdata/vector.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(v.HMACKeyHex)
	var events []Event
	if err := json.Unmarshal(v.Events, &events); err != nil {
		t.Fatal(err)
	}
	if got := Genesis("n1"); got != v.GenesisN1 {
		t.Fatalf("Genesis(n1) = %s, want %s", got, v.GenesisN1)
	}
	for _, e := range events {
		got, err := ComputeHash(key, &e)
		if err != nil {
			t.Fatal(err)
		}
		if got != e.Hash {
			t.Fatalf("event %s: hash %s, want %s", e.ID, got, e.Hash)
		}
	}
	if got := hex.EncodeToString(CheckpointMessage(&v.Checkpoint)); got != v.CheckpointMessageHex {
		t.Fatalf("checkpoint message %s, want %s", got, v.CheckpointMessageHex)
	}
	// The events above have no key_version (version 1) and hash as they
	// always did; an event of version 2 binds its version.
	for _, e := range events {
		if e.KeyVersion != 0 {
			t.Fatalf("event %s: key_version %d in a pre-rotation vector", e.ID, e.KeyVersion)
		}
	}
	r := v.Rotated
	key2, _ := hex.DecodeString(r.HMACKeyHex)
	if r.Event.KeyVersion != 2 || r.Event.PrevHash != events[1].Hash {
		t.Fatalf("rotated event: version %d, prev_hash %s", r.Event.KeyVersion, r.Event.PrevHash)
	}
	if got, err := ComputeHash(key2, &r.Event); err != nil || got != r.Event.Hash {
		t.Fatalf("rotated event: hash %s (%v), want %s", got, err, r.Event.Hash)
	}
	unbound := r.Event
	unbound.KeyVersion = 1
	if got, _ := ComputeHash(key2, &unbound); got == r.Event.Hash {
		t.Fatal("the key version is not bound into the hash")
	}
	if got := hex.EncodeToString(CheckpointMessage(&r.Checkpoint)); got != r.CheckpointMessageHex || r.Checkpoint.KeyVersion != 2 {
		t.Fatalf("rotated checkpoint message %s (version %d), want %s", got, r.Checkpoint.KeyVersion, r.CheckpointMessageHex)
	}
	if len(v.Targeted) != 2 {
		t.Fatalf("%d targeted events in the vector, want 2", len(v.Targeted))
	}
	for _, tv := range v.Targeted {
		k, _ := hex.DecodeString(tv.HMACKeyHex)
		e := tv.Event
		if got, err := ComputeHash(k, &e); err != nil || got != e.Hash {
			t.Fatalf("targeted event %s: hash %s (%v), want %s", e.ID, got, err, e.Hash)
		}
		// Without its targets the event is in the first form: another hash.
		e.Targets = nil
		if got, _ := ComputeHash(k, &e); got == tv.Event.Hash {
			t.Fatalf("targeted event %s: its targets are not bound", e.ID)
		}
	}
}

// TestVersionOneEncodesAsNoVersion: 0 (not recorded) and 1 are the same
// version, in the hash, the checkpoint message and the JSON form.
func TestVersionOneEncodesAsNoVersion(t *testing.T) {
	e := sampleEvent(1)
	e.PrevHash = Genesis("n1")
	e1 := e
	e1.KeyVersion = 1
	if !bytes.Equal(Canonical(nil, &e), Canonical(nil, &e1)) {
		t.Fatal("key version 1 changes the canonical encoding")
	}
	c := Checkpoint{Node: "n1", Seq: 1, Hash: e.PrevHash}
	c1 := c
	c1.KeyVersion = 1
	if !bytes.Equal(CheckpointMessage(&c), CheckpointMessage(&c1)) {
		t.Fatal("key version 1 changes the checkpoint message")
	}
	for _, ev := range []Event{e, e1} {
		b, err := json.Marshal(ev)
		if err != nil || !bytes.Contains(b, []byte(`"key_version":1,`)) {
			t.Fatalf("JSON of version %d: %s, %v", ev.KeyVersion, b, err)
		}
	}
	e.KeyVersion = 3
	c.KeyVersion = 3
	if bytes.Equal(Canonical(nil, &e), Canonical(nil, &e1)) || bytes.Equal(CheckpointMessage(&c), CheckpointMessage(&c1)) {
		t.Fatal("key version 3 is not bound")
	}
}

func TestEventJSONHasTheAPIFields(t *testing.T) {
	e := sampleEvent(1)
	e.ID, e.Seq, e.Node, e.Time = "n1:1", 1, "n1", time.Date(2024, 5, 1, 12, 0, 0, 123456000, time.UTC)
	e.PrevHash, e.Hash = Genesis("n1"), Genesis("n2")
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "time", "principal", "action", "resource", "decision", "reason",
		"status", "request_id", "hash", "prev_hash", "seq", "node", "principal_id", "principal_kind",
		"roles", "source_ip", "fields", "rule", "count", "value_hmacs"} {
		if _, ok := m[k]; !ok {
			t.Errorf("event JSON lacks %q: %s", k, b)
		}
	}
	if m["principal"] != e.PrincipalID || m["time"] != "2024-05-01T12:00:00.123456Z" {
		t.Errorf("principal %v time %v", m["principal"], m["time"])
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Canonical(nil, &back), Canonical(nil, &e)) || back.Hash != e.Hash {
		t.Fatal("event JSON does not round-trip")
	}
}

func TestEventJSONEmptyListsAreArrays(t *testing.T) {
	b, err := json.Marshal(Event{})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"roles":[]`, `"fields":[]`, `"value_hmacs":[]`} {
		if !bytes.Contains(b, []byte(k)) {
			t.Errorf("%s missing from %s", k, b)
		}
	}
}

func TestEventUnmarshalRefusesWhatTheChainDoesNotCover(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"fail/unknown field", `{"id":"n1:1","password":"hunter2"}`},
		{"fail/principal differs from principal_id", `{"principal_id":"a","principal":"b"}`},
		{"fail/trailing data", `{"id":"n1:1"} {}`},
		{"fail/not an object", `[1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e Event
			if err := e.UnmarshalJSON([]byte(tt.in)); err == nil {
				t.Fatalf("accepted %s", tt.in)
			}
		})
	}
	var e Event
	if err := json.Unmarshal([]byte(`{"principal":"a"}`), &e); err != nil || e.PrincipalID != "a" {
		t.Fatalf("principal alone: %v, %q", err, e.PrincipalID)
	}
}

// TestCanonicalIsInjective checks that moving bytes between neighbouring
// fields, or between a list and its neighbours, changes the encoding.
func TestCanonicalIsInjective(t *testing.T) {
	a := Event{Action: "ab", Resource: "c"}
	b := Event{Action: "a", Resource: "bc"}
	c := Event{Roles: []string{"a", "b"}}
	d := Event{Roles: []string{"ab"}}
	e := Event{Roles: []string{""}}
	f := Event{}
	encs := map[string]string{}
	for name, ev := range map[string]*Event{"a": &a, "b": &b, "c": &c, "d": &d, "e": &e, "f": &f} {
		k := string(Canonical(nil, ev))
		if other, dup := encs[k]; dup {
			t.Fatalf("events %s and %s share an encoding", name, other)
		}
		encs[k] = name
	}
	if !bytes.Equal(Canonical(nil, &Event{Roles: []string{}}), Canonical(nil, &Event{})) {
		t.Fatal("nil and empty lists encode differently")
	}
	if !bytes.Equal(Canonical(nil, &Event{Targets: []string{}}), Canonical(nil, &Event{})) {
		t.Fatal("an empty target list does not encode as none")
	}
}

// TestCanonicalFormsAreDisjoint: an event that names targets never shares
// an encoding with one that does not, whatever its other fields (the
// second form's label differs, and so does the tail it ends with), and
// bytes moved between the targets and their neighbours show.
func TestCanonicalFormsAreDisjoint(t *testing.T) {
	prev := Genesis("n1")
	events := map[string]*Event{
		"no targets":            {PrevHash: prev},
		"no targets, version 2": {PrevHash: prev, KeyVersion: 2},
		"one target":            {PrevHash: prev, Targets: []string{"a"}},
		"one target, version 2": {PrevHash: prev, Targets: []string{"a"}, KeyVersion: 2},
		"two targets":           {PrevHash: prev, Targets: []string{"a", "b"}},
		"joined targets":        {PrevHash: prev, Targets: []string{"ab"}},
		"empty target":          {PrevHash: prev, Targets: []string{""}},
		"prev hash moved":       {PrevHash: prev + "a", Targets: []string{""}},
		// A first-form event whose prev_hash ends in the bytes a second
		// form would add cannot pass for one: the labels differ.
		"no targets, long prev": {PrevHash: prev + "\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x01a"},
	}
	encs := map[string]string{}
	for name, ev := range events {
		k := string(Canonical(nil, ev))
		if other, dup := encs[k]; dup {
			t.Fatalf("events %q and %q share an encoding", name, other)
		}
		encs[k] = name
	}
	// Version 0 and 1 stay the same version in the second form.
	a := Event{PrevHash: prev, Targets: []string{"a"}}
	b := a
	b.KeyVersion = 1
	if !bytes.Equal(Canonical(nil, &a), Canonical(nil, &b)) {
		t.Fatal("key version 0 and 1 encode differently in the second form")
	}
}

func TestCanonicalLenPanicsBeyondFourBytes(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("an int cannot exceed 2^32-1 here")
	}
	tests := []struct {
		name      string
		n         int64
		wantPanic bool
	}{
		{"zero fits", 0, false},
		{"2^32-1 fits", math.MaxUint32, false},
		{"2^32 panics", math.MaxUint32 + 1, true},
		{"negative panics", -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if r := recover(); (r != nil) != tt.wantPanic {
					t.Fatalf("panic = %v, want panic %v", r, tt.wantPanic)
				}
			}()
			if got := canonicalLen(int(tt.n)); int64(got) != tt.n {
				t.Fatalf("canonicalLen(%d) = %d", tt.n, got)
			}
		})
	}
}

func TestComputeHashRefusesMalformedPrevHash(t *testing.T) {
	for _, prev := range []string{"", "zz", Genesis("n1")[:62], "ABCDEF" + Genesis("n1")[6:]} {
		if _, err := ComputeHash(testHMACKey, &Event{PrevHash: prev}); err == nil {
			t.Errorf("ComputeHash accepted prev_hash %q", prev)
		}
	}
}

func TestCheckpointSignature(t *testing.T) {
	c := Checkpoint{Node: "n1", Seq: 10, Hash: Genesis("x"), Time: time.Unix(1, 0)}
	SignCheckpoint(testSignKey, &c)
	if !VerifyCheckpoint(testPubKey, &c) {
		t.Fatal("a fresh signature does not verify")
	}
	for name, edit := range map[string]func(*Checkpoint){
		"seq":  func(c *Checkpoint) { c.Seq++ },
		"node": func(c *Checkpoint) { c.Node = "n2" },
		"hash": func(c *Checkpoint) { c.Hash = Genesis("y") },
		"time": func(c *Checkpoint) { c.Time = c.Time.Add(time.Microsecond) },
	} {
		d := c
		edit(&d)
		if VerifyCheckpoint(testPubKey, &d) {
			t.Errorf("signature still verifies after editing %s", name)
		}
	}
	if VerifyCheckpoint(testPubKey[:5], &c) {
		t.Error("a short public key verified")
	}
}

func TestFilterEffectiveLimit(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, DefaultListLimit}, {-3, DefaultListLimit}, {7, 7}, {5000, MaxListLimit}} {
		if got := (Filter{Limit: tt.in}).EffectiveLimit(); got != tt.want {
			t.Errorf("EffectiveLimit(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func FuzzEventJSON(f *testing.F) {
	e := sampleEvent(1)
	e.ID, e.Seq, e.Node, e.Time, e.PrevHash, e.Hash = "n1:1", 1, "n1", time.Unix(1714564800, 123456000).UTC(), Genesis("n1"), Genesis("n2")
	seed, _ := json.Marshal(e)
	f.Add(seed)
	f.Add([]byte(`{"principal":"a"}`))
	f.Add([]byte(`{"roles":null,"time":"2024-01-01T00:00:00+02:00"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var e1 Event
		if err := json.Unmarshal(data, &e1); err != nil {
			return
		}
		b, err := json.Marshal(e1)
		if err != nil {
			return // a time outside what JSON can hold
		}
		var e2 Event
		if err := json.Unmarshal(b, &e2); err != nil {
			t.Fatalf("re-decoding our own JSON failed: %v\n%s", err, b)
		}
		if !bytes.Equal(Canonical(nil, &e1), Canonical(nil, &e2)) || e1.Hash != e2.Hash {
			t.Fatalf("JSON round trip changed the event:\n%s", b)
		}
	})
}
