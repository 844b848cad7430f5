package app

import (
	"testing"

	"github.com/cofferhq/coffer/internal/policy"
	"github.com/cofferhq/coffer/internal/store"
)

// The store records the policy language version the policy package reads.
func TestPolicyLanguageVersionsAgree(t *testing.T) {
	if store.PolicyLanguageVersion != policy.LanguageVersion {
		t.Fatalf("store.PolicyLanguageVersion %d, policy.LanguageVersion %d", store.PolicyLanguageVersion, policy.LanguageVersion)
	}
}
