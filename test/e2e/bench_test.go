package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/internal/app"
	"github.com/cofferhq/coffer/internal/harden"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// servingRuntime gives the benchmark's process the garbage collector target
// `coffer serve` sets (harden.TuneRuntime), unless GOGC is set, and restores
// the test binary's afterwards: the server under measurement runs in this
// process, and should run as it does in production.
func servingRuntime(b *testing.B) {
	if os.Getenv("GOGC") != "" {
		return
	}
	prev := debug.SetGCPercent(harden.DefaultGCPercent)
	b.Cleanup(func() { debug.SetGCPercent(prev) })
}

// BenchmarkRecordHTTPS measures record create and read through the whole
// server over real HTTPS (in-process client, 32 goroutines), audit included.
// The load script (bench/load.sh) measures the same from another process.
func BenchmarkRecordHTTPS(b *testing.B) {
	servingRuntime(b)
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			n := start(b, be, "COFFER_LIMITS_RATE_LIMIT=0")
			ctx := context.Background()
			if err := n.Admin.CreateCollection(ctx, customers); err != nil {
				b.Fatal(err)
			}
			rec := client.NewRecord{Owner: "u1", Data: map[string]any{"name": "Ada Lovelace", "email": "ada@example.com",
				"card_number": "4111111111111111", "ssn": "123-45-6789"}}
			id, err := n.Admin.CreateRecord(ctx, "customers", rec)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("create", func(b *testing.B) {
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := n.Admin.CreateRecord(ctx, "customers", rec); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("read", func(b *testing.B) {
				var fails atomic.Int64
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := n.Admin.GetRecord(ctx, "customers", id); err != nil {
							fails.Add(1)
						}
					}
				})
				if fails.Load() > 0 {
					b.Fatalf("%d reads failed", fails.Load())
				}
			})
		})
	}
}

// BenchmarkTokenizeBatchHTTPS: one 1,000-item tokenize request per op,
// random and deterministic, through the server over HTTPS, two at a time;
// values/s is the figure that matters.
func BenchmarkTokenizeBatchHTTPS(b *testing.B) {
	servingRuntime(b)
	for _, be := range storetest.Backends() {
		for _, mode := range []string{"random", "deterministic"} {
			b.Run(be.Name+"/"+mode, func(b *testing.B) {
				n := start(b, be, "COFFER_LIMITS_RATE_LIMIT=0", "COFFER_LIMITS_TOKENIZE_LINKABLE_PER_HOUR=0")
				ctx := context.Background()
				items := make([]client.TokenItem, 1000)
				for i := range items {
					// Distinct values: deterministic tokens then make new rows too.
					items[i] = client.TokenItem{Value: fmt.Sprintf("ada%d@example.com", i), Type: "email", Mode: mode}
				}
				b.ResetTimer()
				b.SetParallelism(2)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := n.Admin.Tokenize(ctx, items); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "values/s")
			})
		}
	}
}

// transitBench serves be without a rate limit, with a transit key
// "payments", and returns an admin token and 1,000 items of 100-byte
// plaintexts.
func transitBench(b *testing.B, be storetest.Backend) (*node, string, []map[string]string) {
	n := start(b, be, "COFFER_LIMITS_RATE_LIMIT=0")
	tok := n.Token(n.Init.ClientID, n.Init.ClientSecret)
	if st, _, body := n.postJSON("/v1/keys", tok, map[string]any{"name": "payments"}); st != 201 {
		b.Fatalf("create key: %d %s", st, body)
	}
	pt := base64.StdEncoding.EncodeToString(make([]byte, 100))
	items := make([]map[string]string, 1000)
	for i := range items {
		items[i] = map[string]string{"plaintext": pt}
	}
	return n, tok, items
}

// BenchmarkTransitBatchHTTPS: 1,000-item transit encrypt and decrypt
// batches of 100-byte plaintexts through the server over HTTPS.
func BenchmarkTransitBatchHTTPS(b *testing.B) {
	servingRuntime(b)
	n, tok, items := transitBench(b, storetest.Backends()[0])
	var cts struct {
		Items []struct {
			Ciphertext string `json:"ciphertext"`
		} `json:"items"`
	}
	b.Run("encrypt", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			st, _, body := n.postJSON("/v1/keys/payments/encrypt", tok, map[string]any{"items": items})
			if st != 200 {
				b.Fatalf("encrypt: %d %s", st, body)
			}
			if i == 0 {
				mustJSON(b, body, &cts)
			}
		}
		b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "items/s")
	})
	dec := make([]map[string]string, len(cts.Items))
	for i, c := range cts.Items {
		dec[i] = map[string]string{"ciphertext": c.Ciphertext}
	}
	b.Run("decrypt", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if st, _, body := n.postJSON("/v1/keys/payments/decrypt", tok, map[string]any{"items": dec}); st != 200 {
				b.Fatalf("decrypt: %d %s", st, body)
			}
		}
		b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "items/s")
	})
}

// BenchmarkTransitBatchVsSingleHTTPS: 1,000 100-byte values per op through
// the server over HTTPS (audit included), as one batch_input request and
// as 1,000 single-item requests, one client; items/s is the figure.
func BenchmarkTransitBatchVsSingleHTTPS(b *testing.B) {
	servingRuntime(b)
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			n, tok, items := transitBench(b, be)
			st, _, body := n.postJSON("/v1/keys/payments/encrypt", tok, map[string]any{"batch_input": items})
			var enc struct {
				BatchResults []struct {
					Ciphertext string `json:"ciphertext"`
				} `json:"batch_results"`
			}
			mustJSON(b, body, &enc)
			if st != 200 || len(enc.BatchResults) != 1000 {
				b.Fatalf("encrypt: %d %.200s", st, body)
			}
			cts := make([]map[string]string, 1000)
			for i, r := range enc.BatchResults {
				cts[i] = map[string]string{"ciphertext": r.Ciphertext}
			}
			post := func(b *testing.B, path string, body any) {
				if st, _, out := n.postJSON(path, tok, body); st != 200 {
					b.Fatalf("%s: %d %.200s", path, st, out)
				}
			}
			for _, op := range []struct {
				name string
				in   []map[string]string
			}{{"encrypt", items}, {"decrypt", cts}} {
				path := "/v1/keys/payments/" + op.name
				b.Run(op.name+"/batch_input-1000", func(b *testing.B) {
					for b.Loop() {
						post(b, path, map[string]any{"batch_input": op.in})
					}
					b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "items/s")
				})
				b.Run(op.name+"/single-x1000", func(b *testing.B) {
					for b.Loop() {
						for _, it := range op.in {
							post(b, path, it)
						}
					}
					b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "items/s")
				})
			}
		})
	}
}

// BenchmarkAuditCost: record reads over HTTPS by 32 and by 256 concurrent
// clients, with the audit log group-committed (the default), the same
// without gathering, with one append (one transaction and sync) per event,
// and with no audit at all (a benchmark-only hook), on both backends.
// req/s and cpu-µs/req are the figures; group commit against no audit is
// what auditing costs.
func BenchmarkAuditCost(b *testing.B) {
	servingRuntime(b)
	modes := []struct {
		name string
		opts app.Options
	}{
		{"group-commit", app.Options{}},
		{"group-commit-no-gather", app.Options{AuditGatherGap: -1}},
		{"append-per-event", app.Options{AuditMaxBatch: 1}},
		{"no-audit", app.Options{AuditDiscard: true}},
	}
	for _, be := range storetest.Backends() {
		for _, clients := range []int{32, 256} {
			for _, m := range modes {
				b.Run(fmt.Sprintf("%s/%d-clients/%s", be.Name, clients, m.name), func(b *testing.B) {
					t := newReadTarget(b, startWith(b, be, m.opts, "COFFER_LIMITS_RATE_LIMIT=0"))
					ctx := context.Background()
					var fails atomic.Int64
					cpu0 := storetest.ProcessCPU()
					b.ResetTimer()
					b.SetParallelism(max(clients/runtime.GOMAXPROCS(0), 1))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := t.n.Admin.GetRecord(ctx, "customers", t.id); err != nil {
								fails.Add(1)
							}
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
					// CPU per request (server and in-process client together)
					// varies less than throughput on a shared machine.
					b.ReportMetric(float64((storetest.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/req")
					if fails.Load() > 0 {
						b.Fatalf("%d reads failed", fails.Load())
					}
				})
			}
		}
	}
}

// BenchmarkAuditCostPaired measures what auditing costs a record read the
// way BenchmarkAuditCost does, but with both servers, audited and without
// any audit (Options.AuditDiscard), started in one process and measured in
// alternating slices of b.N/auditCostSlices reads each, the order flipped
// every round. This host's speed drifts by ±20 % from one run to the next,
// more than the cost being measured; slices a few hundred milliseconds
// apart see the same host, so the drift falls on both modes alike. It
// reports each mode's req/s and CPU per read, and cost-% = 100 × (1 −
// audited/unaudited req/s). The audited server is the shipped one
// ("audit"), or on SQLite also one whose audit store only writes each batch
// to a file and syncs it ("flush-floor", Options.AuditFlushFloor): what any
// audit durable before the answer costs on this host, whatever it stores.
// Run it with -benchtime of at least 20000x so each slice is long enough to
// reach steady state; TMPDIR on a tmpfs makes every flush free.
func BenchmarkAuditCostPaired(b *testing.B) {
	servingRuntime(b)
	modes := []struct {
		name string
		opts app.Options
	}{
		{"audit", app.Options{}},
		{"flush-floor", app.Options{AuditFlushFloor: true}},
	}
	for _, be := range storetest.Backends() {
		for _, clients := range []int{32, 256} {
			for _, m := range modes {
				if m.opts.AuditFlushFloor && be.Name != "sqlite" {
					continue // it stores nothing: the backend makes no difference
				}
				b.Run(fmt.Sprintf("%s/%d-clients/%s", be.Name, clients, m.name), func(b *testing.B) {
					audited := newReadTarget(b, startWith(b, be, m.opts, "COFFER_LIMITS_RATE_LIMIT=0"))
					bare := newReadTarget(b, startWith(b, be, app.Options{AuditDiscard: true}, "COFFER_LIMITS_RATE_LIMIT=0"))
					slice := max(b.N/auditCostSlices, 1)
					// Warm both: connections, statement caches, page caches.
					audited.run(b, clients, slice/4)
					bare.run(b, clients, slice/4)
					audited.reset()
					bare.reset()
					b.ResetTimer()
					for round := range auditCostSlices {
						if round%2 == 0 {
							audited.run(b, clients, slice)
							bare.run(b, clients, slice)
						} else {
							bare.run(b, clients, slice)
							audited.run(b, clients, slice)
						}
					}
					b.StopTimer()
					a, u := audited.rate(), bare.rate()
					b.ReportMetric(a, "audited-req/s")
					b.ReportMetric(u, "unaudited-req/s")
					b.ReportMetric(audited.cpuPerRead(), "audited-cpu-µs/req")
					b.ReportMetric(bare.cpuPerRead(), "unaudited-cpu-µs/req")
					b.ReportMetric(100*(1-a/u), "cost-%")
				})
			}
		}
	}
}

// auditCostSlices is how many slices each mode of BenchmarkAuditCostPaired
// runs.
const auditCostSlices = 20

// readTarget is one server of BenchmarkAuditCostPaired with a record to
// read, and the time and CPU its measured slices took.
type readTarget struct {
	n          *node
	id         string
	reads      int
	wall, cpus time.Duration
}

// newReadTarget creates on n the customers collection and one record to
// read.
func newReadTarget(b *testing.B, n *node) *readTarget {
	ctx := context.Background()
	if err := n.Admin.CreateCollection(ctx, customers); err != nil {
		b.Fatal(err)
	}
	id, err := n.Admin.CreateRecord(ctx, "customers", client.NewRecord{Owner: "u1", Data: map[string]any{
		"name": "Ada Lovelace", "email": "ada@example.com", "card_number": "4111111111111111", "ssn": "123-45-6789"}})
	if err != nil {
		b.Fatal(err)
	}
	return &readTarget{n: n, id: id}
}

// run reads the record reads times from clients goroutines and adds the
// slice to t's totals.
func (t *readTarget) run(b *testing.B, clients, reads int) {
	ctx := context.Background()
	var (
		left  atomic.Int64
		fails atomic.Int64
		wg    sync.WaitGroup
	)
	left.Store(int64(reads))
	cpu0, t0 := storetest.ProcessCPU(), time.Now()
	for range clients {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if _, err := t.n.Admin.GetRecord(ctx, "customers", t.id); err != nil {
					fails.Add(1)
				}
			}
		})
	}
	wg.Wait()
	wall, cpu := time.Since(t0), storetest.ProcessCPU()-cpu0
	if fails.Load() > 0 {
		b.Fatalf("%d reads failed", fails.Load())
	}
	t.reads += reads
	t.wall += wall
	t.cpus += cpu
}

// reset forgets the slices run so far (the warm-up).
func (t *readTarget) reset() { t.reads, t.wall, t.cpus = 0, 0, 0 }

func (t *readTarget) rate() float64 { return float64(t.reads) / t.wall.Seconds() }

func (t *readTarget) cpuPerRead() float64 {
	return float64(t.cpus.Microseconds()) / float64(t.reads)
}
