package vaultcompat

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/transit"
)

// FuzzParseMAC: parseMAC never panics, and what it accepts formats back
// to the same text when the base64 is canonical.
func FuzzParseMAC(f *testing.F) {
	f.Add(formatMAC(transit.MAC{Version: 3, Sum: []byte("0123456789abcdef0123456789abcdef")}))
	f.Add("vault:v0:AAAA")
	f.Add("vault:v1:")
	f.Add("vault:v1:a:b")
	f.Add("coffer:v1:AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		m, msg := parseMAC(s)
		if msg != "" {
			if strings.Contains(msg, s) && len(s) > 8 {
				t.Fatalf("message %q quotes the input", msg)
			}
			return
		}
		if m.Version == 0 {
			t.Fatalf("%q parsed with version 0", s)
		}
		if again := formatMAC(m); again != s && !strings.HasPrefix(s, "vault:v0") {
			if _, msg2 := parseMAC(again); msg2 != "" {
				t.Fatalf("%q parses, its format %q does not", s, again)
			}
		}
	})
}

// FuzzReadParams: any body is a params or Vault's 400/413, never a panic.
func FuzzReadParams(f *testing.F) {
	for _, s := range []string{"", "null", "{}", `{"batch_input":[{"plaintext":"eA=="}]}`, `{"batch_input":"[{}]"}`, "[]", `{"a":1}{"b":2}`, `{"x":` + strings.Repeat("[", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/transit/encrypt/k", bytes.NewReader(body))
		p, err := readParams(r)
		if err != nil {
			if st := status(err); st != http.StatusBadRequest && st != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d for %q", st, body)
			}
			return
		}
		_, _, _ = p.batch()
		_, _ = p.str("plaintext")
		_, _ = p.integer("key_version")
		_, _, _ = p.boolean("exportable")
		_ = p.warnings()
	})
}

// TestStatusTable: Vault's statuses for Coffer's error codes, and Vault's
// words for a refusal and an unknown path.
func TestStatusTable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want int
		msg  string
	}{
		{coffer.Errorf(coffer.EUNAUTHENTICATED, "a bearer access token is required"), 403, permissionDenied},
		{coffer.Errorf(coffer.EFORBIDDEN, "not allowed to decrypt keys/k"), 403, permissionDenied},
		{coffer.Errorf(coffer.EINVALID, "plaintext must be standard base64"), 400, "plaintext must be standard base64"},
		{coffer.Errorf(coffer.EMALFORMED, transit.MsgUndecryptable), 400, transit.MsgUndecryptable},
		{coffer.Errorf(coffer.ENOTFOUND, "no such endpoint"), 404, "unsupported path"},
		{translate(coffer.Errorf(coffer.ENOTFOUND, "transit key not found"), msgKeyNotFound), 400, msgKeyNotFound},
		{&coffer.Error{Code: coffer.ERATELIMIT, Message: "rate limit exceeded", RetryAfterSeconds: 1}, 429, "rate limit exceeded"},
		{errors.New("disk on fire"), 500, "internal error"},
	} {
		w := httptest.NewRecorder()
		if st := writeError(w, tt.err, "rid"); st != tt.want || w.Code != tt.want {
			t.Errorf("%v: status %d, want %d", tt.err, st, tt.want)
		}
		if got := w.Body.String(); got != `{"errors":["`+tt.msg+`"]}`+"\n" {
			t.Errorf("%v: body %s", tt.err, got)
		}
	}
	w := httptest.NewRecorder()
	writeError(w, notFound(nil), "rid")
	if w.Code != 404 || w.Body.String() != `{"errors":[]}`+"\n" {
		t.Errorf("read of nothing: %d %s", w.Code, w.Body)
	}
}
