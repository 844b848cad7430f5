package store_test

import (
	"context"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

// TestAddMetaKeepsTheFirstValue: AddMeta sets a value once; a later call
// (another node racing) gets the first value back and changes nothing.
func TestAddMetaKeepsTheFirstValue(t *testing.T) {
	forEach(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		got, err := db.AddMeta(ctx, "test.add_meta", "first")
		if err != nil || got != "first" {
			t.Fatalf("AddMeta = %q, %v; want first", got, err)
		}
		got, err = db.AddMeta(ctx, "test.add_meta", "second")
		if err != nil || got != "first" {
			t.Fatalf("second AddMeta = %q, %v; want first", got, err)
		}
		if v, err := db.Meta(ctx, "test.add_meta"); err != nil || v != "first" {
			t.Fatalf("Meta = %q, %v; want first", v, err)
		}
	})
}
