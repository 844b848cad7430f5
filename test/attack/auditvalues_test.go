package attack

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/audit"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// The class "audit value MACs that link or leak": an audit event names a
// searched value or a detokenized token by a keyed MAC (value_hmacs). It
// must link nothing in a copy of the database (the blind index and token
// MACs), give a principal that may search and read the audit log no
// dictionary of other principals' searches, and stop naming an erased
// subject's values once the subject is erased.

// valueMACs returns the value_hmacs of the events of action by principal
// kind and id, as GET /v1/audit/events serves them.
func valueMACs(t *testing.T, n *node, action string) map[string][]string {
	t.Helper()
	var out struct {
		Events []audit.Event `json:"events"`
	}
	n.must(t, 200, "GET", "/v1/audit/events?limit=1000&action="+action, n.admin, nil, &out)
	byPrincipal := map[string][]string{}
	for _, e := range out.Events {
		byPrincipal[e.PrincipalID] = append(byPrincipal[e.PrincipalID], e.ValueHMACs...)
	}
	return byPrincipal
}

// storedMACs returns the MACs a database copy holds: the blind index's and
// the tokens'.
func storedMACs(t *testing.T, n *node) [][]byte {
	t.Helper()
	_, dsn := n.config(setup{}).Database()
	db := storetest.Intruder(t, dsn)
	var out [][]byte
	for _, q := range []string{`SELECT mac FROM record_index`, `SELECT mac FROM tokens`} {
		rs, err := db.QueryContext(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for rs.Next() {
			var m []byte
			if err := rs.Scan(&m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		_ = rs.Close()
	}
	if len(out) == 0 {
		t.Fatal("no stored MAC to compare with")
	}
	return out
}

// TestAuditValueMACsLinkNothing: the support client and the admin search
// for the same email and the admin detokenizes the planted tokens. No
// value_hmac is (a prefix of) a MAC the database keeps, and the two
// principals' MACs of one value differ: reading the audit log (or the
// shipped file) with a database copy links no search to its records, and a
// principal that searches and reads the audit log learns nothing of
// another's searches by searching the same value.
func TestAuditValueMACsLinkNothing(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		w := plantWorld(t, n)
		for _, tok := range []string{w.tokenSupport, n.admin} {
			n.must(t, 200, "POST", "/v1/collections/customers/records/search", tok,
				map[string]any{"where": map[string]any{"email": "ada@example.com"}}, nil)
		}
		n.must(t, 200, "POST", "/v1/detokenize", n.admin, map[string]any{"tokens": w.tokens}, nil)
		searches, detok := valueMACs(t, n, "search"), valueMACs(t, n, "detokenize")
		admin := searches[n.Init.ClientID]
		var support []string
		for id, macs := range searches {
			if id != n.Init.ClientID {
				support = append(support, macs...)
			}
		}
		if len(admin) != 1 || len(support) != 1 {
			t.Fatalf("search value MACs: %v", searches)
		}
		if admin[0] == support[0] {
			t.Errorf("two principals' searches for one value carry the same MAC %q: a dictionary for whoever searches and reads the audit log", admin[0])
		}
		all := append(append([]string{}, admin...), support...)
		for _, macs := range detok {
			all = append(all, macs...)
		}
		if len(all) != 4 {
			t.Fatalf("value MACs: search %v, detokenize %v", searches, detok)
		}
		for _, stored := range storedMACs(t, n) {
			for _, k := range []int{8, 12, 16, 32} {
				if k > len(stored) {
					continue
				}
				head := base64.RawURLEncoding.EncodeToString(stored[:k])
				for _, h := range all {
					if strings.Contains(h, head) {
						t.Errorf("value_hmac %q is the head of a MAC the database keeps: it links the audit log to the rows", h)
					}
				}
			}
		}
	})
}

// TestAuditValueMACsDieWithTheSubject: a search for an erased subject's
// email is named in the audit log by a MAC under a version of an
// audit-only key; erasing the subject destroys that version, so nothing
// can make the MAC again, and the next search is named under another.
func TestAuditValueMACsDieWithTheSubject(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		plantWorld(t, n)
		search := func() string {
			t.Helper()
			n.must(t, 200, "POST", "/v1/collections/customers/records/search", n.admin,
				map[string]any{"where": map[string]any{"email": "ada@example.com"}}, nil)
			macs := valueMACs(t, n, "search")[n.Init.ClientID]
			if len(macs) == 0 {
				t.Fatal("the search carries no value MAC")
			}
			return macs[len(macs)-1]
		}
		before := search()
		n.must(t, 200, "DELETE", "/v1/subjects/subject-a", n.admin, nil, nil)
		after := search()
		if after == before {
			t.Fatalf("the same MAC %q before and after the erasure", before)
		}
		version, _, ok := strings.Cut(strings.TrimPrefix(before, "v"), ".")
		if !ok {
			t.Fatalf("value MAC %q does not name its key version", before)
		}
		v, err := strconv.Atoi(version)
		if err != nil {
			t.Fatalf("value MAC %q: %v", before, err)
		}
		_, dsn := n.config(setup{}).Database()
		db := storetest.Intruder(t, dsn)
		var state string
		var wrapped []byte
		err = db.QueryRowContext(context.Background(), `SELECT state, wrapped FROM data_keys WHERE key_id = $1 AND version = $2`,
			"audit-value/customers/email", v).Scan(&state, &wrapped)
		if err != nil || state != "destroyed" || len(wrapped) != 0 {
			t.Fatalf("key audit-value/customers/email version %d after the erasure: %q, %d wrapped bytes, %v; want destroyed", v, state, len(wrapped), err)
		}
	})
}
