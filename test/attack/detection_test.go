package attack

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

// Exfiltration that stays under the detectors' thresholds by its shape
// is the class: records wide enough that few of them carry many values,
// values that leave through an update's answer, a read split across a
// minute boundary, the same client through two tokens. Each raises
// data.bulk_read (detect.bulk_read_values, 500 values per sliding minute)
// for the principal that read.
func TestBulkReadEvasion(t *testing.T) {
	forEachBackend(t, setup{}, func(t *testing.T, n *node) {
		n.must(t, 201, "POST", "/v1/collections", n.admin, customers, nil)
		var ids []string
		for i := range 100 {
			var out struct{ ID string }
			n.must(t, 201, "POST", "/v1/collections/customers/records", n.admin, map[string]any{"owner": "o", "data": map[string]any{
				"name": "same", "email": fmt.Sprintf("c%d@example.com", i), "card_number": "4111111111111111",
				"ssn": "123-45-6789", "age": 40, "birth_date": "1985-02-03"}}, &out)
			ids = append(ids, out.ID)
		}
		var toks struct{ Tokens []string }
		items := make([]map[string]string, 300)
		for i := range items {
			items[i] = map[string]string{"value": fmt.Sprintf("%s-%d", marker, i), "type": "string"}
		}
		n.must(t, 200, "POST", "/v1/tokenize", n.admin, map[string]any{"items": items}, &toks)

		attacks := map[string]func(tok string){
			// 100 records of 6 fields in one search: 600 values.
			"wide records": func(tok string) {
				n.must(t, 200, "POST", "/v1/collections/customers/records/search", tok,
					map[string]any{"where": map[string]any{"name": "same"}, "limit": 100}, nil)
			},
			// 100 updates, each answered with the record's 6 values.
			"values in update answers": func(tok string) {
				for _, id := range ids {
					n.must(t, 200, "PATCH", "/v1/collections/customers/records/"+id, tok, map[string]any{"data": map[string]any{"age": 41}}, nil)
				}
			},
			// 300 values 10 seconds before a minute boundary, 300 after it.
			"split across a minute boundary": func(tok string) {
				now := n.Clock.Now()
				n.Clock.Advance(now.Truncate(time.Minute).Add(time.Minute - 10*time.Second).Sub(now))
				n.must(t, 200, "POST", "/v1/detokenize", tok, map[string]any{"tokens": toks.Tokens}, nil)
				n.Clock.Advance(20 * time.Second)
				n.must(t, 200, "POST", "/v1/detokenize", tok, map[string]any{"tokens": toks.Tokens}, nil)
			},
		}
		for name, attack := range attacks {
			t.Run(name, func(t *testing.T) {
				var c struct {
					ClientID     string `json:"client_id"`
					ClientSecret string `json:"client_secret"`
				}
				n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": "exfil", "roles": []string{"admin"}}, &c)
				attack(n.Token(c.ClientID, c.ClientSecret))
				if !bulkReadRaised(t, n, c.ClientID) {
					t.Fatalf("no data.bulk_read for %s", c.ClientID)
				}
			})
		}
		// Two tokens of one client are one principal: 300 values each.
		var c struct {
			ClientID     string `json:"client_id"`
			ClientSecret string `json:"client_secret"`
		}
		n.must(t, 201, "POST", "/v1/clients", n.admin, map[string]any{"name": "exfil2", "roles": []string{"admin"}}, &c)
		for range 2 {
			n.must(t, 200, "POST", "/v1/detokenize", n.Token(c.ClientID, c.ClientSecret), map[string]any{"tokens": toks.Tokens}, nil)
		}
		if !bulkReadRaised(t, n, c.ClientID) {
			t.Fatalf("no data.bulk_read for two tokens of %s", c.ClientID)
		}
		noEchoInLog(t, n)
	})
}

// bulkReadRaised waits (detection is asynchronous) for a data.bulk_read
// event of principal.
func bulkReadRaised(t *testing.T, n *node, principal string) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out struct {
			Events []struct{ Principal string } `json:"events"`
		}
		n.must(t, 200, "GET", "/v1/security/events?limit=1000&kind="+url.QueryEscape("data.bulk_read"), n.admin, nil, &out)
		for _, e := range out.Events {
			if e.Principal == principal {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
