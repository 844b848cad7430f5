package transit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
)

// batchOf wraps items as a batch_input without references.
func batchOf(items ...Item) []BatchItem {
	out := make([]BatchItem, len(items))
	for i, it := range items {
		out[i] = BatchItem{Item: it}
	}
	return out
}

func ciphertextBatch(items ...CiphertextItem) []BatchCiphertextItem {
	out := make([]BatchCiphertextItem, len(items))
	for i, it := range items {
		out[i] = BatchCiphertextItem{CiphertextItem: it}
	}
	return out
}

// wantBatchNote checks the note of a batch call: its target, the items
// that succeeded as Count (and as Values, the values answered, for a
// decrypt), and the outcome counts as Reason.
func wantBatchNote(t *testing.T, c Caller, action string, total, ok int) {
	t.Helper()
	want := fmt.Sprintf("batch of %d: %d ok, %d failed", total, ok, total-ok)
	values := 0
	if action == "decrypt" {
		values = ok
	}
	if c.Note.Action != action || c.Note.Resource != "keys/k" || c.Note.Decision != "allow" ||
		c.Note.Count != ok || c.Note.Values != values || c.Note.Reason != want {
		t.Fatalf("note = %+v, want %s on keys/k allowed, count %d, values %d, reason %q", *c.Note, action, ok, values, want)
	}
}

// TestBatchItemsFailAlone: in a batch_input, an item that cannot be
// encrypted, decrypted or rewrapped gets its own error and the others
// succeed, in order, with their references; every ciphertext that does
// not open has the one opaque message; no error holds the item's value.
func TestBatchItemsFailAlone(t *testing.T) {
	f := newFixture(t)
	n := f.node(func(c *Config) { c.MaxPlaintextBytes = 32 })
	mustCreate(t, n, "k", KeySpec{})
	mustCreate(t, n, "other", KeySpec{})
	tenant := enc("tenant-1")
	secretValue := "4111111111111111"

	items := []BatchItem{
		{Item: Item{Plaintext: enc(secretValue), Context: tenant}, Reference: "row-1"},
		{Item: Item{Plaintext: "not base64: " + Plaintext(secretValue)}, Reference: "row-2"},
		{Item: Item{Plaintext: enc(strings.Repeat("x", 33))}},
		{Item: Item{Plaintext: enc("x"), Context: "%%" + Plaintext(secretValue)}},
		{Item: Item{Plaintext: ""}, Reference: "empty"},
		{Item: Item{Plaintext: enc("second")}},
	}
	c := caller()
	res, err := n.EncryptBatch(ctx, c, "k", items)
	if err != nil {
		t.Fatal(err)
	}
	wantErr := []string{"", "plaintext must be standard base64", "plaintext: at most 32 bytes", "context must be standard base64", "", ""}
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	for i, r := range res {
		if r.Error != wantErr[i] || r.Reference != items[i].Reference {
			t.Errorf("result %d = %+v, want error %q, reference %q", i, r, wantErr[i], items[i].Reference)
		}
		if ok := r.Error == ""; ok != strings.HasPrefix(r.Ciphertext, "coffer:v1:") || ok != (r.KeyVersion == 1) {
			t.Errorf("result %d = %+v: a ciphertext and version 1 exactly when there is no error", i, r)
		}
	}
	wantBatchNote(t, c, "encrypt", 6, 3)
	if b, _ := json.Marshal(res); bytes.Contains(b, []byte(secretValue)) || bytes.Contains(b, []byte(enc(secretValue))) {
		t.Fatalf("results echo a value: %s", b)
	}

	good := res[0].Ciphertext
	_, env, err := ParseCiphertext(good)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(env)
	tampered[len(tampered)-1] ^= 1
	tamperedCT, _ := FormatCiphertext(tampered)
	v9 := bytes.Clone(env)
	v9[4] = 9 // a version the key does not have
	v9CT, _ := FormatCiphertext(v9)
	ofOther := mustEncrypt(t, n, "other", Item{Plaintext: enc("x"), Context: tenant})[0].Ciphertext
	body := strings.SplitN(good, ":", 3)[2]
	cts := []BatchCiphertextItem{
		{CiphertextItem: CiphertextItem{Ciphertext: good, Context: tenant}, Reference: "row-1"},
		{CiphertextItem: CiphertextItem{Ciphertext: good, Context: enc("tenant-2")}},
		{CiphertextItem: CiphertextItem{Ciphertext: good}},
		{CiphertextItem: CiphertextItem{Ciphertext: tamperedCT, Context: tenant}},
		{CiphertextItem: CiphertextItem{Ciphertext: v9CT, Context: tenant}},
		{CiphertextItem: CiphertextItem{Ciphertext: "coffer:v2:" + body, Context: tenant}},
		{CiphertextItem: CiphertextItem{Ciphertext: ofOther, Context: tenant}},
		{CiphertextItem: CiphertextItem{Ciphertext: "coffer:v1:@@" + secretValue}},
		{CiphertextItem: CiphertextItem{Ciphertext: "coffer:v1:" + strings.Repeat("A", 200)}},
		{CiphertextItem: CiphertextItem{Ciphertext: good, Context: "!" + Plaintext(secretValue)}},
		{CiphertextItem: CiphertextItem{Ciphertext: res[4].Ciphertext}, Reference: "empty"},
		{CiphertextItem: CiphertextItem{Ciphertext: res[5].Ciphertext}},
	}
	wantErr = []string{"", MsgUndecryptable, MsgUndecryptable, MsgUndecryptable, MsgUndecryptable, MsgUndecryptable,
		MsgUndecryptable, "ciphertext must be coffer:vN:BASE64 as encrypt returns it", "ciphertext is too long",
		"context must be standard base64", "", ""}
	wantPlain := map[int]Plaintext{0: enc(secretValue), 10: "", 11: enc("second")}
	check := func(t *testing.T, res []BatchDecrypted) {
		t.Helper()
		for i, r := range res {
			if r.Error != wantErr[i] || r.Reference != cts[i].Reference {
				t.Errorf("result %d = error %q, reference %q; want %q, %q", i, r.Error, r.Reference, wantErr[i], cts[i].Reference)
			}
			want, ok := wantPlain[i]
			if (r.Plaintext != nil) != ok || ok && *r.Plaintext != want {
				t.Errorf("result %d: plaintext %v, want one: %v", i, r.Plaintext, ok)
			}
		}
		if b, _ := json.Marshal(res); bytes.Contains(b, []byte(secretValue)) {
			t.Fatalf("results echo a value: %s", b)
		}
	}
	c = caller()
	dec, err := n.DecryptBatch(ctx, c, "k", cts)
	if err != nil {
		t.Fatal(err)
	}
	check(t, dec)
	wantBatchNote(t, c, "decrypt", 12, 3)

	// Rewrap after a rotation: the good ones move to v2, the others fail
	// as in decrypt, and no plaintext is answered.
	if _, err := n.Rotate(ctx, caller(), "k"); err != nil {
		t.Fatal(err)
	}
	c = caller()
	rw, err := n.RewrapBatch(ctx, c, "k", cts)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rw {
		_, ok := wantPlain[i]
		if r.Error != wantErr[i] || ok != strings.HasPrefix(r.Ciphertext, "coffer:v2:") || ok != (r.KeyVersion == 2) {
			t.Errorf("rewrap result %d = %+v, want error %q", i, r, wantErr[i])
		}
	}
	wantBatchNote(t, c, "rewrap", 12, 3)
	mustDecrypt(t, n, "k", rw[0].Ciphertext, string(tenant), secretValue)

	// Below the minimum decryption version: the same opaque error.
	if _, err := n.Configure(ctx, caller(), "k", KeyConfig{MinDecryptionVersion: u32(2)}); err != nil {
		t.Fatal(err)
	}
	dec, err = n.DecryptBatch(ctx, caller(), "k", ciphertextBatch(CiphertextItem{Ciphertext: good, Context: tenant},
		CiphertextItem{Ciphertext: rw[0].Ciphertext, Context: tenant}))
	if err != nil || dec[0].Error != MsgUndecryptable || dec[1].Error != "" || *dec[1].Plaintext != enc(secretValue) {
		t.Fatalf("below the minimum version: %+v, %v", dec, err)
	}
}

// TestBatchFailsWholeOnlyForWhatNoItemEscapes: the batch size, the policy
// and a missing key fail the call, before any keyring work; a batch whose
// every item fails is still answered, item by item, and rotates nothing.
func TestBatchFailsWholeOnlyForWhatNoItemEscapes(t *testing.T) {
	f := newFixture(t)
	n := f.node(func(c *Config) { c.MaxBatch = 3 })
	mustCreate(t, n, "k", KeySpec{})
	ok := batchOf(Item{Plaintext: enc("a")})
	cts := ciphertextBatch(CiphertextItem{Ciphertext: mustEncrypt(t, n, "k", Item{Plaintext: enc("a")})[0].Ciphertext})
	calls := []struct {
		name string
		do   func(Caller) error
		code string
		msg  string
	}{
		{"invalid/empty batch_input", func(c Caller) error { _, err := n.EncryptBatch(ctx, c, "k", []BatchItem{}); return err },
			coffer.EINVALID, "batch_input: at least one item is required"},
		{"too large/over max batch", func(c Caller) error { _, err := n.EncryptBatch(ctx, c, "k", make([]BatchItem, 4)); return err },
			coffer.ETOOLARGE, "batch_input: at most 3 items per request"},
		{"too large/decrypt over max batch", func(c Caller) error {
			_, err := n.DecryptBatch(ctx, c, "k", make([]BatchCiphertextItem, 4))
			return err
		}, coffer.ETOOLARGE, "batch_input: at most 3 items per request"},
		{"not found/missing key", func(c Caller) error { _, err := n.EncryptBatch(ctx, c, "nope", ok); return err },
			coffer.ENOTFOUND, msgNotFound},
		{"not found/decrypt under a missing key", func(c Caller) error { _, err := n.DecryptBatch(ctx, c, "nope", cts); return err },
			coffer.ENOTFOUND, msgNotFound},
		{"not found/rewrap under a missing key", func(c Caller) error { _, err := n.RewrapBatch(ctx, c, "nope", cts); return err },
			coffer.ENOTFOUND, msgNotFound},
		{"invalid/bad key name", func(c Caller) error { _, err := n.EncryptBatch(ctx, c, "Bad Name", ok); return err },
			coffer.EINVALID, msgBadName},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			before := n.keys.calls.Load()
			err := tt.do(caller())
			wantCode(t, err, tt.code)
			if coffer.ErrorMessage(err) != tt.msg {
				t.Fatalf("message %q, want %q", coffer.ErrorMessage(err), tt.msg)
			}
			if d := n.keys.calls.Load() - before; d != 0 {
				t.Fatalf("%d keyring calls", d)
			}
		})
	}

	denied := []struct {
		name  string
		allow []string
		do    func(Caller) error
	}{
		{"forbidden/encrypt", []string{"decrypt"}, func(c Caller) error { _, err := n.EncryptBatch(ctx, c, "k", ok); return err }},
		{"forbidden/decrypt", []string{"encrypt"}, func(c Caller) error { _, err := n.DecryptBatch(ctx, c, "k", cts); return err }},
		{"forbidden/rewrap without encrypt", []string{"decrypt"}, func(c Caller) error { _, err := n.RewrapBatch(ctx, c, "k", cts); return err }},
		{"forbidden/rewrap without decrypt", []string{"encrypt"}, func(c Caller) error { _, err := n.RewrapBatch(ctx, c, "k", cts); return err }},
	}
	for _, tt := range denied {
		t.Run(tt.name, func(t *testing.T) {
			f.auth.set(tt.allow...)
			defer f.auth.set("admin", "read", "encrypt", "decrypt")
			before, writes := n.keys.calls.Load(), f.ms.writes.Load()
			c := caller()
			wantCode(t, tt.do(c), coffer.EFORBIDDEN)
			if c.Note.Decision != "deny" || c.Note.Reason == "" || strings.HasPrefix(c.Note.Reason, "batch") {
				t.Fatalf("note = %+v", *c.Note)
			}
			if n.keys.calls.Load() != before || f.ms.writes.Load() != writes {
				t.Fatal("a denied batch did work")
			}
		})
	}

	t.Run("answered/every item failed", func(t *testing.T) {
		// A key due to rotate by count is not rotated by a batch that
		// encrypts nothing.
		mustEncrypt(t, n, "k", Item{Plaintext: enc("b")}, Item{Plaintext: enc("c")})
		if err := n.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		m := f.node(func(c *Config) { c.RotateAfter = 1 })
		before, writes := m.keys.calls.Load(), f.ms.writes.Load()
		c := caller()
		res, err := m.EncryptBatch(ctx, c, "k", batchOf(Item{Plaintext: "!"}, Item{Plaintext: "?"}))
		if err != nil || len(res) != 2 || res[0].Error == "" || res[1].Error == "" || res[0].Ciphertext != "" {
			t.Fatalf("EncryptBatch = %+v, %v", res, err)
		}
		wantBatchNote(t, c, "encrypt", 2, 0)
		if m.keys.calls.Load() != before || f.ms.writes.Load() != writes {
			t.Fatal("a batch that encrypts nothing used the keyring or wrote")
		}
		c = caller()
		rw, err := m.RewrapBatch(ctx, c, "k", ciphertextBatch(CiphertextItem{Ciphertext: "coffer:v1:AAAA"}))
		if err != nil || rw[0].Error == "" {
			t.Fatalf("RewrapBatch = %+v, %v", rw, err)
		}
		if f.ms.get(t, "k").LatestVersion != 1 {
			t.Fatal("a rewrap of nothing rotated the key")
		}
	})
}

// TestBatchResultJSONIsVaultShaped: results marshal as Vault's transit
// batch_results do, a value or an error, key_version beside a ciphertext,
// and a decrypted empty value keeps its (empty) plaintext.
func TestBatchResultJSONIsVaultShaped(t *testing.T) {
	p := Plaintext("")
	for _, tt := range []struct {
		v    any
		want string
	}{
		{BatchCiphertext{Ciphertext: "coffer:v3:AAAA", KeyVersion: 3}, `{"ciphertext":"coffer:v3:AAAA","key_version":3}`},
		{BatchCiphertext{BatchStatus: BatchStatus{Error: "plaintext must be standard base64", Reference: "r"}},
			`{"error":"plaintext must be standard base64","reference":"r"}`},
		{BatchDecrypted{Plaintext: &p}, `{"plaintext":""}`},
		{BatchDecrypted{BatchStatus: BatchStatus{Error: MsgUndecryptable}}, `{"error":"ciphertext cannot be decrypted"}`},
	} {
		if b, err := json.Marshal(tt.v); err != nil || string(b) != tt.want {
			t.Errorf("json = %s, %v; want %s", b, err, tt.want)
		}
	}
	var in BatchItem
	if err := json.Unmarshal([]byte(`{"plaintext":"eA==","context":"eQ==","reference":"r1"}`), &in); err != nil ||
		in.Plaintext != "eA==" || in.Context != "eQ==" || in.Reference != "r1" {
		t.Fatalf("BatchItem = %+v, %v", in, err)
	}
	if got := fmt.Sprint(in, BatchDecrypted{Plaintext: &p}); strings.Contains(got, "eA==") {
		t.Fatalf("fmt shows a value: %s", got)
	}
}
