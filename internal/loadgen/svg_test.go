package loadgen_test

import (
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/loadgen"
)

// TestSVGEdgeCases: a single concurrency level, a scenario with nothing
// answered (zero throughput, no latency) and a label needing escaping
// still make a well-formed plot; the empty scenario draws no line.
func TestSVGEdgeCases(t *testing.T) {
	rep := &loadgen.Report{Started: time.Now(), Target: "https://x<&>", Cores: 2, StepSeconds: 1, Rounds: 1,
		Concurrency: []int{8}, Scenarios: []string{"healthz", "dead"},
		Summary: []loadgen.Summary{
			{Scenario: "healthz", Concurrency: 8, ReqPerSec: 1234, P99ms: 3.5},
			{Scenario: "dead", Concurrency: 8},
		}}
	// One line per panel for healthz; "dead" has no positive point.
	checkSVG(t, rep, 1)
}
