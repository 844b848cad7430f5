package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestMetrics: /metrics on its own listener, without a token, in the
// Prometheus text format that promtool accepts, with no value or id in it.
func TestMetrics(t *testing.T) {
	n := start(t, storetest.Backends()[0])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := n.srv
	go func() { _ = srv.ServeMetrics(ln) }()
	ctx := context.Background()
	if err := n.admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	const marker = "metricsmarker@example.com"
	id, err := n.admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": marker}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.GetRecord(ctx, "customers", id); err != nil {
		t.Fatal(err)
	}
	n.do("GET", "/v1/collections", "bad-token", "", nil)
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`coffer_http_requests_total{code="201",route="POST /v1/collections/{c}/records"}`,
		`coffer_records_total{op="read"}`,
		`coffer_auth_failures_total{method="bearer"}`,
		`coffer_audit_events_total`,
		`coffer_security_events_total{kind="data.bulk_read"} 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{marker, id, n.init.ClientID} {
		if strings.Contains(text, leak) {
			t.Fatalf("metrics hold %q", leak)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is required in CI (Debian package prometheus)")
		}
		t.Skip("promtool not installed")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
