package httpapi

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyring"
)

// TestProblemTypes: a domain error's own problem type is served in place
// of its code's, with its code's status; an ended key met anywhere is a
// documented 409, never an internal error.
func TestProblemTypes(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		typ    string
	}{
		{&coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemSubjectErased, Message: "m"}, 409, "subject-erased"},
		{fmt.Errorf("vault: %w", &coffer.Error{Code: coffer.ECONFLICT, Type: coffer.ProblemIntegrity, Message: "m"}), 409, "integrity"},
		{coffer.Errorf(coffer.ECONFLICT, "m"), 409, "conflict"},
		{fmt.Errorf("token: open: %w", keyring.ErrVersionDestroyed), 409, "key-version-destroyed"},
		{fmt.Errorf("seal: %w", keyring.ErrKeyRetired), 409, "key-retired"},
		{fmt.Errorf("seal: %w", keyring.ErrKeyDestroyed), 409, "key-destroyed"},
		{errors.New("boom"), 500, "internal"},
	} {
		status, p := problemFor(tc.err, "r1")
		if status != tc.status || p.Status != tc.status || p.Type != "https://coffer.dev/problems/"+tc.typ {
			t.Errorf("%v: %d %s, want %d %s", tc.err, status, p.Type, tc.status, tc.typ)
		}
	}
}
