package transit

import (
	"testing"
)

func benchItems(b *testing.B, n node, count int) ([]Item, []CiphertextItem) {
	b.Helper()
	mustCreate(b, n, "bench", KeySpec{})
	pt := enc(string(make([]byte, 100)))
	items := make([]Item, count)
	for i := range items {
		items[i] = Item{Plaintext: pt}
	}
	cts := mustEncrypt(b, n, "bench", items...)
	in := make([]CiphertextItem, count)
	for i, c := range cts {
		in[i] = CiphertextItem{Ciphertext: c.Ciphertext}
	}
	return items, in
}

func benchEncrypt(b *testing.B, count int) {
	f := newFixture(b)
	n := f.node()
	items, _ := benchItems(b, n, count)
	b.SetBytes(int64(100 * count))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.Encrypt(ctx, caller(), "bench", items); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*count), "ns/item")
}

func benchDecrypt(b *testing.B, count int) {
	f := newFixture(b)
	n := f.node()
	_, in := benchItems(b, n, count)
	b.SetBytes(int64(100 * count))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.Decrypt(ctx, caller(), "bench", in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*count), "ns/item")
}

// 100-byte plaintexts, in-process: one item per call, and batches of 1,000.
func BenchmarkEncrypt100(b *testing.B)          { benchEncrypt(b, 1) }
func BenchmarkDecrypt100(b *testing.B)          { benchDecrypt(b, 1) }
func BenchmarkEncrypt100Batch1000(b *testing.B) { benchEncrypt(b, 1000) }
func BenchmarkDecrypt100Batch1000(b *testing.B) { benchDecrypt(b, 1000) }

// BenchmarkBatchVsSingle: 1,000 100-byte values per op, in process,
// as one batch_input (EncryptBatch, DecryptBatch) and as 1,000 calls of
// one item; ns/item is the figure to compare.
func BenchmarkBatchVsSingle(b *testing.B) {
	f := newFixture(b)
	n := f.node()
	items, in := benchItems(b, n, 1000)
	batch := make([]BatchItem, len(items))
	for i := range items {
		batch[i] = BatchItem{Item: items[i]}
	}
	cbatch := make([]BatchCiphertextItem, len(in))
	for i := range in {
		cbatch[i] = BatchCiphertextItem{CiphertextItem: in[i]}
	}
	run := func(name string, op func() error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := op(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/item")
		})
	}
	// singles runs op on one item at a time.
	singles := func(op func(i int) error) func() error {
		return func() error {
			for i := range items {
				if err := op(i); err != nil {
					return err
				}
			}
			return nil
		}
	}
	run("encrypt/batch_input-1000", func() error { _, err := n.EncryptBatch(ctx, caller(), "bench", batch); return err })
	run("encrypt/single-x1000", singles(func(i int) error { _, err := n.Encrypt(ctx, caller(), "bench", items[i:i+1]); return err }))
	run("decrypt/batch_input-1000", func() error { _, err := n.DecryptBatch(ctx, caller(), "bench", cbatch); return err })
	run("decrypt/single-x1000", singles(func(i int) error { _, err := n.Decrypt(ctx, caller(), "bench", in[i:i+1]); return err }))
}
