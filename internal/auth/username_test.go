package auth

import (
	"errors"
	"testing"
)

func TestUsernameOneAccountPerName(t *testing.T) {
	_, want, err := Username("alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alice", "Alice", "ALICE", "alice ", " alice", "ａｌｉｃｅ", "Ａlice"} {
		t.Run(name, func(t *testing.T) {
			_, key, err := Username(name)
			if err != nil || key != want {
				t.Fatalf("Username(%q) key %q, %v; want %q", name, key, err, want)
			}
		})
	}
	// A whole-script look-alike has the key of the Latin name.
	if _, key, err := Username("асе"); err != nil || key != "ace" {
		t.Fatalf("Cyrillic асе: key %q, %v; want ace", key, err)
	}
}

func TestUsernameDisplayKeepsCase(t *testing.T) {
	d, k, err := Username("  Ada   Lovelace ")
	if err != nil || d != "Ada Lovelace" || k != "ada lovelace" {
		t.Fatalf("got %q %q %v", d, k, err)
	}
}

func TestUsernameRefused(t *testing.T) {
	for name, in := range map[string]string{
		"Cyrillic a in Latin": "аlice",
		"Greek o in Latin":    "bοb",
		"empty":               "   ",
		"control":             "al\u0007ice",
		"invalid UTF-8":       "al\xffice",
		"too long":            string(make([]byte, 200)),
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Username(in); !errors.Is(err, ErrBadUsername) {
				t.Fatalf("Username(%q) = %v, want ErrBadUsername", in, err)
			}
		})
	}
	for _, ok := range []string{"山田太郎", "yamada山田", "bob2", "o'brien", "Zoë", "Ελένη"} {
		if _, _, err := Username(ok); err != nil {
			t.Errorf("Username(%q): %v", ok, err)
		}
	}
}
