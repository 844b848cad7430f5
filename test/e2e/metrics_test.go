package e2e

import (
	"context"
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
	n.ServeMetrics()
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		t.Fatal(err)
	}
	const marker = "metricsmarker@example.com"
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "o", Data: map[string]any{"email": marker}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Admin.GetRecord(ctx, "customers", id); err != nil {
		t.Fatal(err)
	}
	n.do("GET", "/v1/collections", "bad-token", "", nil)
	text := n.scrapeMetrics()
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
	for _, leak := range []string{marker, id, n.Init.ClientID} {
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
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
