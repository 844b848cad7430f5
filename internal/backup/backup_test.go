package backup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/backup"
	"github.com/cofferhq/coffer/internal/coffer"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
	"github.com/cofferhq/coffer/internal/secret"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// provider returns a local root key provider whose key is 32 copies of b.
func provider(t testing.TB, name string, b byte) keyprovider.Provider {
	t.Helper()
	p, err := keyprovider.NewLocal(name, secret.NewKey(bytes.Repeat([]byte{b}, 32)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fill writes records whose values add up to about n KiB, plus a few rows
// of other tables, through the store's methods.
func fill(t testing.TB, db *store.DB, n int) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(db.CreateCollection(ctx, coffer.Collection{Name: "customers", CreatedAt: t0,
		Fields: []coffer.Field{{Name: "email", Type: coffer.TypeEmail, Searchable: true}}}))
	val := make([]byte, 1024)
	for i := range val {
		val[i] = byte(i * 7)
	}
	for i := range n {
		val[0], val[1] = byte(i), byte(i>>8)
		must(db.InsertRecord(ctx, coffer.SealedRecord{ID: fmt.Sprintf("r%05d", i), Collection: "customers",
			KeyID: "collection/customers", CreatedAt: t0, UpdatedAt: t0, Values: map[string][]byte{"email": val}},
			[]coffer.IndexEntry{{Field: "email", Version: 1, MAC: []byte{byte(i), byte(i >> 8)}}}))
	}
	must(db.InsertDataKey(ctx, coffer.DataKey{KeyID: "collection/customers", Version: 1, Wrapped: []byte("wrapped"),
		State: coffer.KeyActive, Created: t0}))
	must(db.CreateUser(ctx, coffer.User{ID: "u1", Username: "ann", PasswordHash: "h", CreatedAt: t0}))
	_, err := db.SavePolicy(ctx, "yaml", []byte("rules: []\n"), t0)
	must(err)
	must(db.SetMeta(ctx, "node_id", "n-1"))
}

// dump renders every exported row, sorted per table.
func dump(t testing.TB, db *store.DB) map[string][]string {
	t.Helper()
	d := map[string][]string{}
	err := db.Export(context.Background(), func(table string, row []any) error {
		d[table] = append(d[table], fmt.Sprintf("%T%q", row, row))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range d {
		slices.Sort(rows)
	}
	return d
}

func writeBackup(t testing.TB, db *store.DB, p keyprovider.Provider) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := backup.Write(context.Background(), &buf, p, db, nil); err != nil {
		t.Fatalf("write backup: %v", err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	for _, from := range storetest.Backends() {
		for _, to := range storetest.Backends() {
			t.Run(from.Name+"_to_"+to.Name, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				src := storetest.Open(t, from)
				fill(t, src, 40)
				p := provider(t, "file:/etc/coffer/root.key", 1)
				file := writeBackup(t, src, p)

				h, err := backup.ReadHeader(bytes.NewReader(file))
				if err != nil || h.Dialect != from.Name || h.Provider != "file:/etc/coffer/root.key" || h.Schema < 1 {
					t.Fatalf("header: %+v, %v", h, err)
				}

				// The same root key, read from another source, restores.
				dst := storetest.Open(t, to)
				if err := backup.Read(ctx, bytes.NewReader(file), provider(t, "env:COFFER_ROOT_KEY", 1), dst); err != nil {
					t.Fatalf("restore: %v", err)
				}
				want, got := dump(t, src), dump(t, dst)
				if len(want["records"]) != 40 || len(want) != len(got) {
					t.Fatalf("restored tables: %d, want %d", len(got), len(want))
				}
				for table, rows := range want {
					if !slices.Equal(rows, got[table]) {
						t.Errorf("table %s differs after restore", table)
					}
				}
				r, err := dst.Record(ctx, "customers", "r00007")
				if err != nil || r.Values["email"][0] != 7 {
					t.Fatalf("restored record: %v", err)
				}
			})
		}
	}
}

func TestRoundTripEmptyStore(t *testing.T) {
	ctx := context.Background()
	b := storetest.Backends()[0]
	p := provider(t, "test", 1)
	file := writeBackup(t, storetest.Open(t, b), p)
	dst := storetest.Open(t, b)
	if err := backup.Read(ctx, bytes.NewReader(file), p, dst); err != nil {
		t.Fatalf("restore of an empty backup: %v", err)
	}
	if d := dump(t, dst); len(d) != 0 {
		t.Fatalf("restored rows from an empty backup: %v", d)
	}
}

// layout locates the parts of a backup file.
type layout struct {
	header, stream int // end of the header bytes; start of the first chunk
	chunks         []int
}

func parse(t testing.TB, file []byte) layout {
	t.Helper()
	hl := int(binary.BigEndian.Uint32(file[len(backup.Magic):]))
	l := layout{header: len(backup.Magic) + 4 + hl}
	wl := int(binary.BigEndian.Uint32(file[l.header:]))
	l.stream = l.header + 4 + wl
	for off := l.stream; off < len(file); off += 64<<10 + 16 {
		l.chunks = append(l.chunks, off)
	}
	return l
}

func TestDamagedBackupImportsNothing(t *testing.T) {
	b := storetest.Backends()[0] // SQLite: the format is the same for both
	src := storetest.Open(t, b)
	fill(t, src, 200) // ≈ 200 KiB of values: four chunks
	p := provider(t, "test", 1)
	file := writeBackup(t, src, p)
	other := writeBackup(t, src, p) // same rows, same key, other data key and nonces
	l := parse(t, file)
	lo := parse(t, other)
	if len(l.chunks) < 3 {
		t.Fatalf("backup has %d chunks, want at least 3", len(l.chunks))
	}
	c0, c1, last := l.chunks[0], l.chunks[1], l.chunks[len(l.chunks)-1]
	full := 64<<10 + 16

	flip := func(off int) []byte {
		f := bytes.Clone(file)
		f[off] ^= 0x01
		return f
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	replaceJSON := func(old, new string) []byte {
		f := bytes.Replace(file[:l.header], []byte(old), []byte(new), 1)
		if bytes.Equal(f, file[:l.header]) {
			t.Fatalf("header has no %q", old)
		}
		if len(old) != len(new) {
			t.Fatal("keep the header length")
		}
		return cat(f, file[l.header:])
	}

	for _, tc := range []struct {
		name string
		file []byte
		p    keyprovider.Provider
		want error
	}{
		{"fails/empty file", nil, p, backup.ErrFormat},
		{"fails/not a backup", []byte("SQLite format 3\x00 and so on and so on"), p, backup.ErrFormat},
		{"fails/other format version", cat([]byte("COFFER-BACKUP\x02"), file[len(backup.Magic):]), p, backup.ErrFormat},
		{"fails/truncated in the header", file[:l.header-3], p, backup.ErrFormat},
		{"fails/truncated after the header", file[:l.header], p, backup.ErrCorrupt},
		{"fails/truncated in the wrapped key", file[:l.stream-5], p, backup.ErrCorrupt},
		{"fails/truncated before the stream", file[:l.stream], p, backup.ErrCorrupt},
		{"fails/truncated in the first chunk", file[:c0+1000], p, backup.ErrCorrupt},
		{"fails/truncated at a chunk boundary", file[:c1], p, backup.ErrCorrupt},
		{"fails/truncated at the last chunk", file[:last], p, backup.ErrCorrupt},
		{"fails/last byte missing", file[:len(file)-1], p, backup.ErrCorrupt},
		{"fails/bit flipped in the first chunk", flip(c0 + 100), p, backup.ErrCorrupt},
		{"fails/bit flipped in a middle chunk", flip(c1 + 5000), p, backup.ErrCorrupt},
		{"fails/bit flipped in a tag", flip(c1 - 1), p, backup.ErrCorrupt},
		{"fails/bit flipped in the last chunk", flip(len(file) - 20), p, backup.ErrCorrupt},
		{"fails/chunks swapped", cat(file[:c0], file[c1:c1+full], file[c0:c1], file[c1+full:]), p, backup.ErrCorrupt},
		{"fails/chunk dropped", cat(file[:c1], file[c1+full:]), p, backup.ErrCorrupt},
		{"fails/chunk repeated", cat(file[:c1], file[c0:c1], file[c1:]), p, backup.ErrCorrupt},
		{"fails/one byte appended", cat(file, []byte{0}), p, backup.ErrCorrupt},
		{"fails/a tag's worth appended", cat(file, make([]byte, 16)), p, backup.ErrCorrupt},
		{"fails/last chunk appended again", cat(file, file[last:]), p, backup.ErrCorrupt},
		{"fails/chunk from another backup", cat(file[:c1], other[lo.chunks[1]:lo.chunks[1]+full], file[c1+full:]), p, backup.ErrCorrupt},
		{"fails/stream of another backup", cat(file[:l.stream], other[lo.stream:]), p, backup.ErrCorrupt},
		{"fails/header of another backup", cat(other[:lo.header], file[l.header:]), p, keyprovider.ErrUnwrap},
		{"fails/header dialect edited", replaceJSON(`"dialect":"sqlite"`, `"dialect":"sqlitf"`), p, keyprovider.ErrUnwrap},
		{"fails/header time edited", replaceJSON(`"created":"20`, `"created":"19`), p, keyprovider.ErrUnwrap},
		{"fails/bit flipped in the wrapped key", flip(l.stream - 3), p, keyprovider.ErrUnwrap},
		{"fails/wrong root key", file, provider(t, "test", 2), keyprovider.ErrUnwrap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dst := storetest.Open(t, b)
			err := backup.Read(context.Background(), bytes.NewReader(tc.file), tc.p, dst)
			if !errors.Is(err, tc.want) {
				t.Fatalf("restore: %v, want %v", err, tc.want)
			}
			if d := dump(t, dst); len(d) != 0 {
				t.Fatalf("a refused restore imported %d tables", len(d))
			}
		})
	}
	// And the untouched file restores, so the cases above fail for their
	// damage alone.
	dst := storetest.Open(t, b)
	if err := backup.Read(context.Background(), bytes.NewReader(file), p, dst); err != nil {
		t.Fatalf("restore of the undamaged file: %v", err)
	}
}

// fakeStore is an in-memory Importer that keeps the Importer contract: it
// stages rows and commits them only when next returns io.EOF.
type fakeStore struct {
	rows   int
	called bool
	schema int64
}

func (f *fakeStore) Import(ctx context.Context, next func() (string, []any, error)) error {
	f.called = true
	n := 0
	for {
		_, _, err := next()
		if errors.Is(err, io.EOF) {
			f.rows = n
			return nil
		}
		if err != nil {
			return err
		}
		n++
	}
}

type versionedFake struct{ fakeStore }

func (f *versionedFake) SchemaVersion(context.Context) (int64, error) { return f.schema, nil }

func TestWrongRootKeyFailsBeforeImport(t *testing.T) {
	src := storetest.Open(t, storetest.Backends()[0])
	fill(t, src, 3)
	file := writeBackup(t, src, provider(t, "file:a", 1))
	var f fakeStore
	err := backup.Read(context.Background(), bytes.NewReader(file), provider(t, "file:b", 9), &f)
	if !errors.Is(err, keyprovider.ErrUnwrap) {
		t.Fatalf("wrong key: %v, want ErrUnwrap", err)
	}
	if f.called {
		t.Fatal("Import was called under a wrong root key")
	}
	if !strings.Contains(err.Error(), `"file:a"`) {
		t.Fatalf("error does not name the provider that wrote the backup: %v", err)
	}
}

func TestSchemaVersionMismatchRefused(t *testing.T) {
	src := storetest.Open(t, storetest.Backends()[0])
	p := provider(t, "test", 1)
	file := writeBackup(t, src, p)
	f := &versionedFake{fakeStore{schema: 999}}
	err := backup.Read(context.Background(), bytes.NewReader(file), p, f)
	if !errors.Is(err, backup.ErrSchema) || f.called {
		t.Fatalf("restore into another schema version: %v (import called: %v), want ErrSchema", err, f.called)
	}
}

func TestWriteUsesInjectedClockAndRand(t *testing.T) {
	src := storetest.Open(t, storetest.Backends()[0])
	fill(t, src, 2)
	p := provider(t, "test", 1)
	now := func() time.Time { return t0 }
	var a, b bytes.Buffer
	// Same rand for the data key and prefix; the provider draws its own
	// wrap nonce, so only the stream is comparable.
	for _, w := range []*bytes.Buffer{&a, &b} {
		o := backup.Options{Rand: bytes.NewReader(bytes.Repeat([]byte{42}, 64)), Now: now}
		if err := o.Write(context.Background(), w, p, src); err != nil {
			t.Fatal(err)
		}
	}
	la, lb := parse(t, a.Bytes()), parse(t, b.Bytes())
	if !bytes.Equal(a.Bytes()[:la.header], b.Bytes()[:lb.header]) || !bytes.Equal(a.Bytes()[la.stream:], b.Bytes()[lb.stream:]) {
		t.Fatal("the same rand and clock gave different headers or streams")
	}
	h, err := backup.ReadHeader(bytes.NewReader(a.Bytes()))
	if err != nil || !h.Created.Equal(t0) || !bytes.Equal(h.NoncePrefix, bytes.Repeat([]byte{42}, 7)) {
		t.Fatalf("header: %+v %v", h, err)
	}
}

// FuzzRead feeds Read arbitrary bytes, and mutations of a valid backup:
// it must never panic, and whatever it refuses it must refuse before the
// importer commits.
func FuzzRead(f *testing.F) {
	// Deterministic randomness and clock: every fuzz worker rebuilds the
	// same valid backup.
	p, err := keyprovider.NewLocal("test", secret.NewKey(bytes.Repeat([]byte{1}, 32)), fixedReader(5))
	if err != nil {
		f.Fatal(err)
	}
	var valid bytes.Buffer
	o := backup.Options{Rand: fixedReader(6), Now: func() time.Time { return t0 }}
	if err := o.Write(context.Background(), &valid, p, rowsExporter{}); err != nil {
		f.Fatal(err)
	}
	f.Add(valid.Bytes())
	f.Add(valid.Bytes()[:len(valid.Bytes())-1])
	f.Add([]byte(backup.Magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var s fakeStore
		err := backup.Read(context.Background(), bytes.NewReader(data), p, &s)
		if err != nil && s.rows != 0 {
			t.Fatalf("refused input committed %d rows", s.rows)
		}
		if err == nil && !bytes.Equal(data, valid.Bytes()) {
			t.Fatal("accepted an input other than the valid backup")
		}
	})
}

// fixedReader is an endless source of one byte, for reproducible fuzz seeds.
type fixedReader byte

func (r fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// rowsExporter exports a few fixed rows of every value type.
type rowsExporter struct{}

func (rowsExporter) Dialect() string { return "test" }

func (rowsExporter) Export(_ context.Context, fn func(string, []any) error) error {
	for _, r := range [][]any{
		{"a", int64(-1), []byte{}, nil},
		{"", []byte("x"), int64(1 << 62)},
	} {
		if err := fn("t", r); err != nil {
			return err
		}
	}
	return nil
}

func BenchmarkBackup10kRecordsSQLite(b *testing.B) {
	db := storetest.Open(b, storetest.Backends()[0])
	seed10k(b, db)
	p := provider(b, "test", 1)
	size := int64(len(writeBackup(b, db, p)))
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := backup.Write(context.Background(), io.Discard, p, db, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size), "file-bytes")
}

func BenchmarkRestore10kRecordsSQLite(b *testing.B) {
	db := storetest.Open(b, storetest.Backends()[0])
	seed10k(b, db)
	p := provider(b, "test", 1)
	file := writeBackup(b, db, p)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dst := storetest.Open(b, storetest.Backends()[0])
		b.StartTimer()
		if err := backup.Read(context.Background(), bytes.NewReader(file), p, dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = dst.Close()
		b.StartTimer()
	}
}

// seed10k loads 10,000 records of about 300 bytes of sealed values, each
// with one blind-index entry, in one transaction.
func seed10k(b *testing.B, db *store.DB) {
	b.Helper()
	const n = 10000
	val, err := store.EncodedValues(map[string][]byte{"email": bytes.Repeat([]byte{7}, 120), "name": bytes.Repeat([]byte{9}, 80)})
	if err != nil {
		b.Fatal(err)
	}
	i := -1
	err = db.Import(context.Background(), func() (string, []any, error) {
		i++
		switch {
		case i == 0:
			return "collections", []any{"customers", `{"fields":[]}`, int64(0), int64(1)}, nil
		case i <= n:
			return "records", []any{"customers", fmt.Sprintf("r%05d", i), "owner", "", "collection/customers", val,
				int64(0), int64(1), int64(2), nil}, nil
		case i <= 2*n:
			k := i - n
			return "record_index", []any{"customers", "email", []byte(fmt.Sprintf("mac-%05d-0123456789abcdef", k)),
				fmt.Sprintf("r%05d", k), int64(1)}, nil
		}
		return "", nil, io.EOF
	})
	if err != nil {
		b.Fatal(err)
	}
}
