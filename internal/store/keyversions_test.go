package store_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/envelope"
	"github.com/cofferhq/coffer/internal/store"
)

// env is a stand-in envelope whose header names version v.
func env(v uint32) []byte {
	b := make([]byte, envelope.Overhead+3)
	b[0] = envelope.FormatVersion
	binary.BigEndian.PutUint32(b[1:envelope.HeaderSize], v)
	return b
}

// TestCountSealedUnder counts the record values (and records' seals) and token values sealed
// under one version of a key, by their envelope header, and nothing else.
func TestCountSealedUnder(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		mustCollection(t, db, "customers")
		recs := []coffer.SealedRecord{
			{ID: "a", KeyID: "collection/customers", Values: map[string][]byte{"email": env(1), "name": env(2)}},
			{ID: "b", KeyID: "collection/customers", Values: map[string][]byte{"email": env(1)}, Revision: 1, Seal: env(3)},
			{ID: "c", Subject: "s1", KeyID: "subject/s1", Values: map[string][]byte{"email": env(1)}},
		}
		for _, r := range recs {
			r.Collection, r.CreatedAt, r.UpdatedAt = "customers", t0, t0
			if err := db.InsertRecord(ctx, r, nil); err != nil {
				t.Fatal(err)
			}
		}
		// A subject's key seals its records in every collection.
		mustCollection(t, db, "orders")
		if err := db.InsertRecord(ctx, coffer.SealedRecord{Collection: "orders", ID: "d", Subject: "s1", KeyID: "subject/s1",
			Values: map[string][]byte{"item": env(1)}, CreatedAt: t0, UpdatedAt: t0}, nil); err != nil {
			t.Fatal(err)
		}
		_, err := db.PutTokens(ctx, []coffer.StoredToken{
			{MAC: []byte{1}, Type: "ssn", Mode: "random", Sealed: env(1), CreatedAt: t0},
			{MAC: []byte{2}, Type: "ssn", Mode: "deterministic", Version: 1, Sealed: env(3), CreatedAt: t0},
			{MAC: []byte{3}, Type: "ssn", Mode: "format_preserving", Version: 1, CreatedAt: t0},
			{MAC: []byte{4}, Type: "email", Mode: "random", Sealed: env(1), CreatedAt: t0},
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			key  string
			v    uint32
			want int64
		}{
			{"collection/customers", 1, 2}, {"collection/customers", 2, 1}, {"collection/customers", 3, 1}, // b's seal
			{"collection/customers", 4, 0},
			{"subject/s1", 1, 2}, {"subject/s2", 1, 0},
			{"tokens/ssn", 1, 1}, {"tokens/ssn", 3, 1}, {"tokens/email", 1, 1}, {"tokens/phone", 1, 0},
		} {
			if n, err := db.CountSealedUnder(ctx, tc.key, tc.v); err != nil || n != tc.want {
				t.Errorf("%s version %d: %d %v, want %d", tc.key, tc.v, n, err, tc.want)
			}
		}
		for _, key := range []string{"index/customers/email", "tokens/ssn/fpe", "tokens/", "audit/hmac"} {
			if _, err := db.CountSealedUnder(ctx, key, 1); err == nil {
				t.Errorf("%s: counted", key)
			}
		}
	})
}

// TestDestroyRetiredDataKey: only a retired version is destroyed, its
// wrapped bytes erased, and the key's other versions are left alone.
func TestDestroyRetiredDataKey(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		for v := uint32(1); v <= 3; v++ {
			if err := db.InsertDataKey(ctx, coffer.DataKey{KeyID: "collection/c", Version: v, Wrapped: []byte{byte(v), 7}, State: coffer.KeyActive, Created: t0}); err != nil {
				t.Fatal(err)
			}
		}
		if ok, err := db.DestroyRetiredDataKey(ctx, "collection/c", 1); err != nil || ok {
			t.Fatalf("destroy an active version: %v %v", ok, err)
		}
		if ok, err := db.SwapDataKeyState(ctx, "collection/c", 1, coffer.KeyActive, coffer.KeyRetired); err != nil || !ok {
			t.Fatalf("retire: %v %v", ok, err)
		}
		if ok, err := db.SwapDataKeyState(ctx, "collection/c", 1, coffer.KeyActive, coffer.KeyRetired); err != nil || ok {
			t.Fatalf("retire again by compare-and-swap: %v %v", ok, err)
		}
		if ok, err := db.DestroyRetiredDataKey(ctx, "collection/c", 1); err != nil || !ok {
			t.Fatalf("destroy a retired version: %v %v", ok, err)
		}
		if ok, err := db.DestroyRetiredDataKey(ctx, "collection/c", 1); err != nil || ok {
			t.Fatalf("destroy it again: %v %v", ok, err)
		}
		if ok, err := db.SwapDataKeyState(ctx, "collection/c", 1, coffer.KeyRetired, coffer.KeyActive); err != nil || ok {
			t.Fatalf("bring a destroyed version back: %v %v", ok, err)
		}
		rows, err := db.DataKeys(ctx, "collection/c")
		if err != nil || len(rows) != 3 {
			t.Fatalf("%v %v", rows, err)
		}
		for _, r := range rows {
			wantState, wantLen := coffer.KeyActive, 2
			if r.Version == 1 {
				wantState, wantLen = coffer.KeyDestroyed, 0
			}
			if r.State != wantState || len(r.Wrapped) != wantLen {
				t.Errorf("version %d: %s with %d wrapped bytes, want %s with %d", r.Version, r.State, len(r.Wrapped), wantState, wantLen)
			}
		}
	})
}

// TestTransitKeyUpdatesKeepEachOther: a rotation and a configuration of
// one transit key on two nodes each write only their own fields, so
// neither undoes the other whatever the order; and of two nodes rotating
// at once, the stored latest version ends at the newer one.
func TestTransitKeyUpdatesKeepEachOther(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		k := coffer.TransitKey{Name: "k", CreatedAt: t0, MinDecryptionVersion: 1, LatestVersion: 1}
		if err := db.CreateTransitKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AddTransitEncryptions(ctx, "k", 7); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordTransitVersion(ctx, "k", 3); err != nil { // node b's rotation, recorded first
			t.Fatal(err)
		}
		if err := db.RecordTransitVersion(ctx, "k", 2); err != nil { // node a's, later
			t.Fatal(err)
		}
		// A configuration from a read made before either rotation.
		k.MinDecryptionVersion, k.Deletable, k.AutoRotatePeriod = 1, true, time.Hour
		if err := db.ConfigureTransitKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		got, err := db.TransitKey(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		want := coffer.TransitKey{Name: "k", CreatedAt: t0, MinDecryptionVersion: 1, LatestVersion: 3, Deletable: true, AutoRotatePeriod: time.Hour}
		if got.CreatedAt.Equal(t0) {
			got.CreatedAt = t0 // same instant; compare the rest as values
		}
		if got != want {
			t.Fatalf("stored: %+v\nwant    %+v", got, want)
		}
		// A rotation recorded after a configuration keeps its settings.
		k.MinDecryptionVersion = 3
		if err := db.ConfigureTransitKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := db.RecordTransitVersion(ctx, "k", 4); err != nil {
			t.Fatal(err)
		}
		if got, err = db.TransitKey(ctx, "k"); err != nil || got.MinDecryptionVersion != 3 || got.LatestVersion != 4 {
			t.Fatalf("after configure then rotate: %+v %v", got, err)
		}
		for _, err := range []error{db.ConfigureTransitKey(ctx, coffer.TransitKey{Name: "none"}), db.RecordTransitVersion(ctx, "none", 1)} {
			if coffer.ErrorCode(err) != coffer.ENOTFOUND {
				t.Errorf("update of a key that does not exist: %v, want not found", err)
			}
		}
	})
}

// TestTransitKeyNames: the names of every transit key, in order, and none
// once deleted.
func TestTransitKeyNames(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if names, err := db.TransitKeyNames(ctx); err != nil || len(names) != 0 {
			t.Fatalf("empty store: %v %v", names, err)
		}
		for _, n := range []string{"b", "a", "c"} {
			if err := db.CreateTransitKey(ctx, coffer.TransitKey{Name: n, CreatedAt: t0, MinDecryptionVersion: 1, LatestVersion: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.DeleteTransitKey(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		if names, err := db.TransitKeyNames(ctx); err != nil || strings.Join(names, ",") != "a,b" {
			t.Fatalf("names %v %v, want a,b", names, err)
		}
	})
}
