package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// recordRead is a record read as the server logs it (taken from a real
// deployment's audit_events, hashes aside).
const recordRead = `{"id":"vm-8b48c61b:4","seq":4,"node":"vm-8b48c61b","time":"2026-12-05T02:23:35.370548Z","request_id":"fe569e3d192dfae3f6dd60b7","principal_id":"cl_5065fr0gxdh04d8sbzmp","principal_kind":"client","roles":["admin"],"source_ip":"127.0.0.1","action":"read","resource":"collections/customers","fields":["card_number","email","name","ssn"],"decision":"allow","rule":"admin[0]","reason":"","status":200,"count":1,"value_hmacs":[],"prev_hash":"1769e3d3db4217c033ab30fa8acf04d71b79e18056c0034ad10daf453455b025","hash":"cd858e059f8626fb69f59425a866287e6179e1365d612f18106966f1e530f446","key_version":1,"targets":["collections/customers/records/01a24403-9575-782e-849f-3b3f174b8fcf"],"principal":"cl_5065fr0gxdh04d8sbzmp"}`

func mustEvent(t testing.TB, s string) Event {
	t.Helper()
	var e Event
	if err := json.Unmarshal([]byte(s), &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// sameEvent compares what the chain covers and the JSON form, which treat
// nil and empty lists alike.
func sameEvent(t *testing.T, got, want Event) {
	t.Helper()
	gj, _ := got.MarshalJSON()
	wj, _ := want.MarshalJSON()
	if !bytes.Equal(gj, wj) {
		t.Fatalf("decoded\n%s\nwant\n%s", gj, wj)
	}
	if !bytes.Equal(Canonical(nil, &got), Canonical(nil, &want)) {
		t.Fatal("canonical encodings differ")
	}
}

// fromColumns is what a store reads back: the columns and the body.
func fromColumns(t *testing.T, e *Event, body []byte, prev string) Event {
	t.Helper()
	d := Event{Node: e.Node, Seq: e.Seq, Time: e.Time, PrincipalID: e.PrincipalID, Action: e.Action, Hash: e.Hash, PrevHash: prev}
	if err := DecodeBody(&d, body); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCompactBodyRoundTrips(t *testing.T) {
	e := mustEvent(t, recordRead)
	body, err := AppendBody(nil, &e, false)
	if err != nil {
		t.Fatal(err)
	}
	sameEvent(t, fromColumns(t, &e, body, ""), e)
	short, err := AppendBody(nil, &e, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(body)-len(short) != 32 || BodyHasPrev(short) || !BodyHasPrev(body) {
		t.Fatalf("omitting prev_hash: %d and %d bytes", len(body), len(short))
	}
	sameEvent(t, fromColumns(t, &e, short, e.PrevHash), e)
	// The typical record read's body, the stored columns aside.
	if len(short) > 110 {
		t.Fatalf("record read body is %d bytes", len(short))
	}
	t.Logf("record read: JSON %d bytes, compact body %d (%d with prev_hash)", len(recordRead), len(short), len(body))
}

func TestCompactRandomEventsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	base := mustEvent(t, recordRead)
	for i := range 2000 {
		e := base
		e.RequestID = randString(r)
		if i%4 == 1 {
			e.RequestID = []string{"fe569e3d192dfae3f6dd60b7", "fe56", "FE569E3D192DFAE3F6DD60B7", "fe569e3d192dfae3f6dd60b"}[i%16/4]
		}
		e.PrincipalKind, e.Roles, e.SourceIP = randString(r), randStrings(r), randString(r)
		e.Resource, e.Fields, e.Decision = randString(r), randStrings(r), randString(r)
		e.Rule, e.Reason, e.ValueHMACs = randString(r), randString(r), randStrings(r)
		e.Status, e.Count = int(r.Int64())-int(r.Uint64()>>1), r.IntN(1<<20)-5
		if i%2 == 0 {
			e.Status = []int{200, 201, 204, 404, 500, 503, 0, 299}[i%8]
		}
		e.KeyVersion = r.Uint32N(5)
		e.Targets = randStrings(r)
		if i%3 == 0 {
			e.PrincipalKind = []string{"client", "user", "external", ""}[i%4]
			e.Decision = []string{"allow", "deny", "", "Allow"}[i%4]
			e.SourceIP = []string{"10.0.0.1", "::1", "::ffff:1.2.3.4", "fe80::1%eth0", "010.0.0.1", "2001:DB8::1"}[i%6]
			e.Targets = append(e.Targets, e.Resource+"/x/01a24403-9575-782e-849f-3b3f174b8fcf", e.Resource+"/records/", e.Resource+"/records/01a24403-9575-782e-849f-3b3f174b8fcf", "records/x", "01A24403-9575-782E-849F-3B3F174B8FCF")
		}
		body, err := AppendBody(nil, &e, false)
		if err != nil {
			t.Fatal(err)
		}
		sameEvent(t, fromColumns(t, &e, body, ""), e)
		rec, err := AppendRecord([]byte("x"), &e)
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := DecodeRecord(append(rec[1:], 9, 9))
		if err != nil || n != len(rec)-1 {
			t.Fatalf("DecodeRecord: %d, %v", n, err)
		}
		sameEvent(t, got, e)
	}
}

func TestCompactRefusesWhatItCannotHoldExactly(t *testing.T) {
	e := mustEvent(t, recordRead)
	bad := e
	bad.ID = "other:4"
	if _, err := AppendBody(nil, &bad, false); err == nil {
		t.Fatal("an id that is not node:seq was stored")
	}
	bad = e
	bad.PrevHash = "ABC"
	if _, err := AppendBody(nil, &bad, false); err == nil {
		t.Fatal("a malformed prev_hash was stored")
	}
}

// TestCompactBodyIsCanonical: every byte string but the one AppendBody
// writes is refused, so a stored event has one body.
func TestCompactBodyIsCanonical(t *testing.T) {
	e := mustEvent(t, recordRead)
	body, _ := AppendBody(nil, &e, false)
	decode := func(b []byte) error {
		d := Event{Node: e.Node, Seq: e.Seq}
		return DecodeBody(&d, b)
	}
	for i := range body {
		for _, delta := range []byte{1, 0x80} {
			b := slices.Clone(body)
			b[i] ^= delta
			d := Event{Node: e.Node, Seq: e.Seq}
			if err := DecodeBody(&d, b); err == nil {
				// A changed byte may decode: then it is another event,
				// whose hash differs.
				if bytes.Equal(Canonical(nil, &d), Canonical(nil, &e)) {
					t.Fatalf("byte %d changed, same event decoded", i)
				}
			}
		}
	}
	for n := range len(body) {
		if decode(body[:n]) == nil {
			t.Fatalf("truncated to %d bytes: decoded", n)
		}
	}
	if decode(append(slices.Clone(body), 0)) == nil {
		t.Fatal("trailing byte decoded")
	}
	// The request id spelled out, not as hex bytes: the same event, so
	// refused.
	plain := append(slices.Clone(body[:33]), 24)
	plain[0] &^= bodyHexRequest | bodyRequest12
	plain = append(append(plain, e.RequestID...), body[33+12:]...)
	if err := decode(plain); err == nil {
		t.Fatal("a second spelling of the same event decoded")
	}
	if decode([]byte{2, 0}) == nil || decode([]byte{FormatCompact | bodyKeyV1, 0}) == nil {
		t.Fatal("unknown format decoded")
	}
	withTime := e
	withTime.Time = time.Time{}
	if _, err := AppendBody(nil, &withTime, true); err != nil {
		t.Fatal(err)
	}
}
