package backup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Row stream tags.
const (
	tagEnd = 0x00 // end marker: uvarint row count, then nothing
	tagRow = 0x01 // uvarint name length, name, uvarint value count, values
)

// Value tags.
const (
	valNull  = 0x00
	valInt   = 0x01 // zigzag varint
	valText  = 0x02 // uvarint length, UTF-8 bytes
	valBytes = 0x03 // uvarint length, bytes
)

// Bounds on what a row may claim, so that a corrupted (yet authenticated)
// stream cannot make the reader allocate without limit.
const (
	maxTableName = 64
	maxColumns   = 256
	maxValue     = 256 << 20
	// bytes read into one allocation before growing on evidence
	readStep = 1 << 20
)

// errRows is wrapped by every error of a malformed row stream.
var errRows = errors.New("malformed row stream")

// appendRow encodes one row. Values must be nil, int64, string or []byte.
func appendRow(b []byte, table string, row []any) ([]byte, error) {
	if table == "" || len(table) > maxTableName {
		return nil, fmt.Errorf("backup: table name of %d bytes", len(table))
	}
	if len(row) > maxColumns {
		return nil, fmt.Errorf("backup: table %s: row of %d values", table, len(row))
	}
	b = append(b, tagRow)
	b = binary.AppendUvarint(b, uint64(len(table)))
	b = append(b, table...)
	b = binary.AppendUvarint(b, uint64(len(row)))
	for i, v := range row {
		switch x := v.(type) {
		case nil:
			b = append(b, valNull)
		case int64:
			b = append(b, valInt)
			b = binary.AppendVarint(b, x)
		case string:
			if len(x) > maxValue {
				return nil, fmt.Errorf("backup: table %s: value %d is too long", table, i)
			}
			b = append(b, valText)
			b = binary.AppendUvarint(b, uint64(len(x)))
			b = append(b, x...)
		case []byte:
			if len(x) > maxValue {
				return nil, fmt.Errorf("backup: table %s: value %d is too long", table, i)
			}
			b = append(b, valBytes)
			b = binary.AppendUvarint(b, uint64(len(x)))
			b = append(b, x...)
		default:
			return nil, fmt.Errorf("backup: table %s: value %d of unsupported type %T", table, i, v)
		}
	}
	return b, nil
}

func appendEnd(b []byte, rows uint64) []byte {
	return binary.AppendUvarint(append(b, tagEnd), rows)
}

// byteReader is what the decoder reads from: the decrypted stream.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// rowDecoder reads rows until the end marker. Errors of the underlying
// reader pass through wrapped; a stream that does not parse is errRows.
type rowDecoder struct {
	r    byteReader
	src  *errTracker
	rows uint64
	done bool
}

func newRowDecoder(r byteReader) *rowDecoder {
	t := &errTracker{r: r}
	return &rowDecoder{r: t, src: t}
}

// next returns the next row, or io.EOF after a valid end marker whose
// count matches and after which the stream ends.
func (d *rowDecoder) next() (string, []any, error) {
	if d.done {
		return "", nil, io.EOF
	}
	tag, err := d.r.ReadByte()
	if err != nil {
		return "", nil, d.fail(err)
	}
	switch tag {
	case tagEnd:
		n, err := binary.ReadUvarint(d.r)
		if err != nil {
			return "", nil, d.fail(err)
		}
		if n != d.rows {
			return "", nil, fmt.Errorf("%w: end marker counts %d rows, stream had %d", errRows, n, d.rows)
		}
		// Nothing may follow the end marker: reading on authenticates the
		// rest of the stream and finds its end.
		if _, err := d.r.ReadByte(); !errors.Is(err, io.EOF) {
			if err != nil {
				return "", nil, d.fail(err)
			}
			return "", nil, fmt.Errorf("%w: data after the end marker", errRows)
		}
		d.done = true
		return "", nil, io.EOF
	case tagRow:
	default:
		return "", nil, fmt.Errorf("%w: unknown record tag", errRows)
	}
	name, err := d.bytes(maxTableName)
	if err != nil {
		return "", nil, err
	}
	if len(name) == 0 {
		return "", nil, fmt.Errorf("%w: empty table name", errRows)
	}
	n, err := binary.ReadUvarint(d.r)
	if err != nil {
		return "", nil, d.fail(err)
	}
	if n > maxColumns {
		return "", nil, fmt.Errorf("%w: row of %d values", errRows, n)
	}
	row := make([]any, n)
	for i := range row {
		t, err := d.r.ReadByte()
		if err != nil {
			return "", nil, d.fail(err)
		}
		switch t {
		case valNull:
		case valInt:
			v, err := binary.ReadVarint(d.r)
			if err != nil {
				return "", nil, d.fail(err)
			}
			row[i] = v
		case valText:
			b, err := d.bytes(maxValue)
			if err != nil {
				return "", nil, err
			}
			row[i] = string(b)
		case valBytes:
			b, err := d.bytes(maxValue)
			if err != nil {
				return "", nil, err
			}
			row[i] = b
		default:
			return "", nil, fmt.Errorf("%w: unknown value tag", errRows)
		}
	}
	d.rows++
	return string(name), row, nil
}

// bytes reads a uvarint length and that many bytes, allocating only as
// the bytes actually arrive.
func (d *rowDecoder) bytes(limit uint64) ([]byte, error) {
	n, err := binary.ReadUvarint(d.r)
	if err != nil {
		return nil, d.fail(err)
	}
	if n > limit {
		return nil, fmt.Errorf("%w: value of %d bytes", errRows, n)
	}
	b := make([]byte, 0, min(n, readStep))
	for uint64(len(b)) < n {
		k := min(n-uint64(len(b)), readStep)
		b = append(b, make([]byte, k)...)
		if _, err := io.ReadFull(d.r, b[uint64(len(b))-k:]); err != nil {
			return nil, d.fail(err)
		}
	}
	return b, nil
}

// fail maps a premature end of the plaintext to errRows and passes the
// stream's own errors (ErrCorrupt, I/O) through.
func (d *rowDecoder) fail(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: unexpected end", errRows)
	}
	if d.src != nil && err == d.src.err {
		return err
	}
	return fmt.Errorf("%w: bad varint", errRows) // binary's overflow error
}

// errTracker remembers the last error its reader returned, so the decoder
// tells the stream's errors (ErrCorrupt, I/O) from its own parse errors.
type errTracker struct {
	r   byteReader
	err error
}

func (t *errTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.note(err)
	return n, err
}

func (t *errTracker) ReadByte() (byte, error) {
	b, err := t.r.ReadByte()
	t.note(err)
	return b, err
}

func (t *errTracker) note(err error) {
	if err != nil && !errors.Is(err, io.EOF) {
		t.err = err
	}
}
