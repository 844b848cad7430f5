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
