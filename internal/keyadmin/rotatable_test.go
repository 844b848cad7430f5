package keyadmin

import (
	"testing"

	"github.com/cofferhq/coffer/internal/auditadmin"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
	"github.com/cofferhq/coffer/internal/lifecycle"
)

// TestAuditKeysRotateButAreKept: the audit keys are rotatable by an
// operator and by age, and the keyring keeps every version of them.
func TestAuditKeysRotateButAreKept(t *testing.T) {
	for _, id := range []string{auditadmin.HMACKeyID, auditadmin.SigningKeyID} {
		if !rotatable(id) || !auditadmin.IsKey(id) {
			t.Errorf("%s is not rotatable", id)
		}
		if !keyring.Permanent(id) {
			t.Errorf("the keyring would let %s be retired or destroyed", id)
		}
		if byAge, byUses := lifecycle.Rules(id); !byAge || byUses {
			t.Errorf("lifecycle.Rules(%s) = %v, %v; want by age only", id, byAge, byUses)
		}
	}
	for _, id := range []string{"audit/", "audit/other", "mask/hash", keyring.RootCheckKeyID, "tokens/index"} {
		if rotatable(id) || auditadmin.IsKey(id) {
			t.Errorf("%s is rotatable", id)
		}
	}
}

// TestPseudonymKeysRotate: an operator may rotate the hash mask's key of
// one field (mask/hash/COLLECTION/FIELD); no schedule does.
func TestPseudonymKeysRotate(t *testing.T) {
	if !rotatable("mask/hash/leads/email") {
		t.Error("mask/hash/leads/email is not rotatable")
	}
	for _, id := range []string{"mask/hash/leads", "mask/hash//email", "mask/hash/leads/email/x"} {
		if rotatable(id) {
			t.Errorf("%s is rotatable", id)
		}
	}
	if byAge, byUses := lifecycle.Rules("mask/hash/leads/email"); byAge || byUses {
		t.Errorf("lifecycle.Rules(mask/hash/…) = %v, %v; want never on a schedule", byAge, byUses)
	}
}
