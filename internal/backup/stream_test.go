package backup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

func testAEADParts(t testing.TB) (key, prefix, aad []byte) {
	t.Helper()
	return bytes.Repeat([]byte{3}, 32), []byte("prefix7"), []byte("header bytes")
}

func seal(t testing.TB, plain []byte) []byte {
	t.Helper()
	key, prefix, aad := testAEADParts(t)
	a, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	w := newStreamWriter(&out, a, prefix, aad)
	// Write in uneven pieces so chunking does not depend on write sizes.
	for len(plain) > 0 {
		k := min(len(plain), 10007)
		if _, err := w.Write(plain[:k]); err != nil {
			t.Fatal(err)
		}
		plain = plain[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func open(t testing.TB, ct []byte) ([]byte, error) {
	t.Helper()
	key, prefix, aad := testAEADParts(t)
	a, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(newStreamReader(bufio.NewReader(bytes.NewReader(ct)), a, prefix, aad))
}

func TestStreamChunkBoundaries(t *testing.T) {
	for _, tc := range []struct {
		size, chunks int
	}{
		{0, 1}, {1, 1}, {chunkSize - 1, 1}, {chunkSize, 1}, {chunkSize + 1, 2},
		{2 * chunkSize, 2}, {3*chunkSize + 5, 4},
	} {
		t.Run(fmt.Sprintf("%d_bytes_in_%d_chunks", tc.size, tc.chunks), func(t *testing.T) {
			plain := make([]byte, tc.size)
			for i := range plain {
				plain[i] = byte(i * 31)
			}
			ct := seal(t, plain)
			if want := tc.size + tc.chunks*tagSize; len(ct) != want {
				t.Fatalf("ciphertext of %d bytes, want %d", len(ct), want)
			}
			got, err := open(t, ct)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("round trip: %v", err)
			}
			// Every cut short of the end fails: at each chunk boundary, and
			// one byte short.
			for cut := 0; cut < len(ct); cut += chunkSize + tagSize {
				if _, err := open(t, ct[:cut]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("cut at %d: %v, want ErrCorrupt", cut, err)
				}
			}
			if _, err := open(t, ct[:len(ct)-1]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("last byte cut: %v, want ErrCorrupt", err)
			}
			if _, err := open(t, append(bytes.Clone(ct), 0)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("byte appended: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestStreamBindsAAD(t *testing.T) {
	key, prefix, _ := testAEADParts(t)
	a, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	ct := seal(t, []byte("rows"))
	r := newStreamReader(bufio.NewReader(bytes.NewReader(ct)), a, prefix, []byte("header bytez"))
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("other header: %v, want ErrCorrupt", err)
	}
}

func TestRowsRoundTrip(t *testing.T) {
	rows := []struct {
		table string
		row   []any
	}{
		{"collections", []any{"c", "{}", int64(0), int64(-1)}},
		{"records", []any{nil, []byte{}, []byte{0, 0xff}, "", "ü", int64(1<<63 - 1), int64(-1 << 63)}},
		{"meta", []any{}},
	}
	var b []byte
	var err error
	for _, r := range rows {
		if b, err = appendRow(b, r.table, r.row); err != nil {
			t.Fatal(err)
		}
	}
	b = appendEnd(b, uint64(len(rows)))
	d := newRowDecoder(bytes.NewReader(b))
	for _, want := range rows {
		table, row, err := d.next()
		if err != nil || table != want.table || fmt.Sprintf("%#v", row) != fmt.Sprintf("%#v", want.row) {
			t.Fatalf("decoded %q %#v %v, want %q %#v", table, row, err, want.table, want.row)
		}
	}
	if _, _, err := d.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last row: %v, want io.EOF", err)
	}
}

func TestRowsRefused(t *testing.T) {
	one, err := appendRow(nil, "meta", []any{"k", "v"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"fails/empty", nil},
		{"fails/no end marker", one},
		{"fails/row count too high", appendEnd(bytes.Clone(one), 2)},
		{"fails/row count too low", appendEnd(bytes.Clone(one), 0)},
		{"fails/data after the end", append(appendEnd(bytes.Clone(one), 1), 0)},
		{"fails/unknown record tag", []byte{7}},
		{"fails/unknown value tag", []byte{tagRow, 1, 't', 1, 9}},
		{"fails/empty table name", []byte{tagRow, 0, 0}},
		{"fails/table name too long", append([]byte{tagRow, 65}, bytes.Repeat([]byte{'t'}, 65)...)},
		{"fails/too many values", []byte{tagRow, 1, 't', 0xff, 0x0f}},
		{"fails/value longer than the stream", []byte{tagRow, 1, 't', 1, valBytes, 0xff, 0xff, 0x7f}},
		{"fails/value over the limit", []byte{tagRow, 1, 't', 1, valText, 0x80, 0x80, 0x80, 0x80, 0x10}},
		{"fails/varint overflow", []byte{tagRow, 1, 't', 1, valInt, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newRowDecoder(bytes.NewReader(tc.in))
			for range 3 {
				if _, _, err := d.next(); err != nil {
					if !errors.Is(err, errRows) {
						t.Fatalf("error %v does not wrap errRows", err)
					}
					return
				}
			}
			t.Fatal("malformed rows accepted")
		})
	}
}

// FuzzRows decodes arbitrary plaintext: it never panics, and whatever
// decodes re-encodes to rows that decode the same.
func FuzzRows(f *testing.F) {
	b, _ := appendRow(nil, "records", []any{nil, int64(-5), "s", []byte{1}})
	f.Add(appendEnd(b, 1))
	f.Add([]byte{tagEnd, 0})
	f.Add([]byte{tagRow, 1, 't', 1, valBytes, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := newRowDecoder(bytes.NewReader(in))
		var re []byte
		n := 0
		for {
			table, row, err := d.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if !errors.Is(err, errRows) {
					t.Fatalf("error %v does not wrap errRows", err)
				}
				return
			}
			if re, err = appendRow(re, table, row); err != nil {
				t.Fatalf("decoded row does not re-encode: %v", err)
			}
			n++
		}
		re = appendEnd(re, uint64(n))
		d2 := newRowDecoder(bytes.NewReader(re))
		for range n {
			if _, _, err := d2.next(); err != nil {
				t.Fatalf("re-encoded rows do not decode: %v", err)
			}
		}
		if _, _, err := d2.next(); !errors.Is(err, io.EOF) {
			t.Fatalf("re-encoded stream: %v", err)
		}
	})
}
