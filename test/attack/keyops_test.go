package attack

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store/storetest"
)

// An insider with key administration rights destroys what protects data
// (a transit key, a subject's key) or tries to and is refused: none of it
// may pass unseen by monitoring. Each attempt moves
// coffer_key_operations_total by kind and outcome (#14.8).
func TestKeyDestructionIsVisible(t *testing.T) {
	n := start(t, storetest.Backend{Name: "sqlite", DSN: storetest.SQLiteDSN}, setup{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.Srv.ServeMetrics(ln) }()
	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	_, insider := n.newClient(t, "insider", "admin")
	n.must(t, 201, "POST", "/v1/keys", insider, map[string]any{"name": "victim"}, nil)
	n.must(t, 200, "POST", "/v1/keys/victim/config", insider, map[string]any{"deletable": true}, nil)
	n.must(t, 204, "DELETE", "/v1/keys/victim", insider, nil, nil)
	n.must(t, 200, "DELETE", "/v1/subjects/"+marker, insider, nil, nil)
	if r := n.call(t, "POST", "/v1/admin/keys/destroy", insider, map[string]any{"key_id": "audit/hmac", "version": 1}); r.status < 400 || r.status >= 500 {
		t.Fatalf("destroy an audit key: %s", r)
	}
	m := scrape()
	for _, want := range []string{
		`coffer_key_operations_total{op="delete",outcome="ok"} 1`,
		`coffer_key_operations_total{op="erase_subject",outcome="ok"} 1`,
		`coffer_key_operations_total{op="destroy",outcome="refused"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, marker) || strings.Contains(m, "victim") {
		t.Error("the metrics name a key or a subject")
	}
}
