package policy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDenialReasonIsBoundedAndValidUTF8(t *testing.T) {
	p := Default()
	long := strings.Repeat("é", 200)
	d := p.Decide(Input{Principal: user("u", long), Action: "read", Resource: "collections/" + long})
	if d.Allowed || !utf8.ValidString(d.Reason) || len(d.Reason) > 3*maxReasonName+64 {
		t.Errorf("reason of %d bytes, valid UTF-8 %v: %q", len(d.Reason), utf8.ValidString(d.Reason), d.Reason)
	}
	d = p.Decide(Input{Principal: user("u", "admin"), Action: long, Resource: "audit"})
	if d.Allowed || !utf8.ValidString(d.Reason) || len(d.Reason) > 128 {
		t.Errorf("unknown action reason: %q", d.Reason)
	}
}
