package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
)

// Magic opens every backup file; its last byte is the format version.
const Magic = "COFFER-BACKUP\x01"

// formatVersion is the header's format field for this layout.
const formatVersion = 1

const (
	dataKeySize   = 32
	maxHeaderSize = 16 << 10
	maxWrapped    = 4 << 10
)

// Sentinel errors callers branch on. A wrong root key is reported by an
// error wrapping keyprovider.ErrUnwrap.
var (
	// ErrFormat: the input is not a Coffer backup, or one of a format
	// version this release does not read.
	ErrFormat = errors.New("backup: not a Coffer backup of a known format")
	// ErrCorrupt: the encrypted rows fail authentication or do not parse:
	// the file was truncated, extended, reordered or altered.
	ErrCorrupt = errors.New("backup: file is corrupt, truncated or altered")
	// ErrSchema: the backup was written at another schema version than
	// the destination store's.
	ErrSchema = errors.New("backup: schema version differs from the store's")
)

// Exporter is the store a backup reads: *store.DB.
//
// Export must call fn with every row of every table from one consistent
// snapshot, tables in dependency order, values int64, string, []byte or nil;
// it must stop and return an error wrapping fn's error when fn fails.
// Dialect names the store's backend ("sqlite", "postgres").
type Exporter interface {
	Export(ctx context.Context, fn func(table string, row []any) error) error
	Dialect() string
}

// Importer is the store a backup is restored into: *store.DB.
//
// Import must refuse a store that holds data; insert the rows next returns
// in one transaction; commit only after next has returned io.EOF; and roll
// everything back, returning an error that wraps next's error, when next
// returns any other error. Read relies on this to import nothing from a file
// that fails verification.
type Importer interface {
	Import(ctx context.Context, next func() (table string, row []any, err error)) error
}

// OlderSchemaImporter is an Importer that can also take the rows of a
// backup written at an older schema version (*store.DB can).
type OlderSchemaImporter interface {
	ImportSchema(ctx context.Context, schema int64, next func() (table string, row []any, err error)) error
}

// SchemaVersioner is implemented by stores that know their migration
// version (*store.DB does). When both the source and the destination
// implement it, Read refuses a backup of a newer schema version, and of an
// older one unless the destination is an OlderSchemaImporter.
type SchemaVersioner interface {
	SchemaVersion(ctx context.Context) (int64, error)
}

// Header is the backup's clear-text header. It is authenticated (as the
// additional data of the key wrap and of every chunk) but not secret.
type Header struct {
	// Format is the format version, 1.
	Format int `json:"format"`
	// Created is when the backup was started.
	Created time.Time `json:"created"`
	// Dialect is the source store's backend.
	Dialect string `json:"dialect"`
	// Provider names the root key provider that wrapped the data key.
	Provider string `json:"provider"`
	// Schema is the source store's migration version, 0 if unknown.
	Schema int64 `json:"schema,omitempty"`
	// NoncePrefix is the stream's 7-byte random nonce prefix.
	NoncePrefix []byte `json:"nonce_prefix"`
}

// Options tune Write.
type Options struct {
	// Rand supplies the data key and the nonce prefix; nil means
	// crypto/rand.Reader.
	Rand io.Reader
	// Now stamps the header; nil means time.Now.
	Now func() time.Time
}

// Write writes a backup of src to w: the header, a fresh data key wrapped
// by p, and every row src exports, encrypted and authenticated. rand
// supplies the data key and nonces (nil means crypto/rand.Reader).
//
// On error, what was written to w is not a valid backup: write to a
// temporary file and rename it into place on success.
func Write(ctx context.Context, w io.Writer, p keyprovider.Provider, src Exporter, rand io.Reader) error {
	return Options{Rand: rand}.Write(ctx, w, p, src)
}

// Write is the package-level Write with o's Rand and Now.
func (o Options) Write(ctx context.Context, w io.Writer, p keyprovider.Provider, src Exporter) error {
	r, now := o.Rand, o.Now
	if r == nil {
		r = rand.Reader
	}
	if now == nil {
		now = time.Now
	}
	h := Header{
		Format:      formatVersion,
		Created:     now().UTC().Round(time.Microsecond),
		Dialect:     src.Dialect(),
		Provider:    p.Name(),
		NoncePrefix: make([]byte, prefixSize),
	}
	if sv, ok := src.(SchemaVersioner); ok {
		v, err := sv.SchemaVersion(ctx)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		h.Schema = v
	}
	dek := make([]byte, dataKeySize)
	defer clear(dek)
	if _, err := io.ReadFull(r, dek); err != nil {
		return fmt.Errorf("backup: data key: %w", err)
	}
	if _, err := io.ReadFull(r, h.NoncePrefix); err != nil {
		return fmt.Errorf("backup: nonce prefix: %w", err)
	}
	hb, err := encodeHeader(h)
	if err != nil {
		return err
	}
	wrapped, err := p.Wrap(ctx, dek, hb)
	if err != nil {
		return fmt.Errorf("backup: wrap the data key: %w", err)
	}
	if len(wrapped) > maxWrapped {
		return fmt.Errorf("backup: wrapped data key of %d bytes is too long", len(wrapped))
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return err
	}

	bw := bufio.NewWriterSize(w, chunkSize+tagSize)
	out := binary.BigEndian.AppendUint32(bytes.Clone(hb), uint32(len(wrapped))) // #nosec G115 -- bounded above
	out = append(out, wrapped...)
	if _, err := bw.Write(out); err != nil {
		return fmt.Errorf("backup: write: %w", err)
	}
	sw := newStreamWriter(bw, aead, h.NoncePrefix, hb)
	var (
		buf  []byte
		rows uint64
	)
	err = src.Export(ctx, func(table string, row []any) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if buf, err = appendRow(buf[:0], table, row); err != nil {
			return err
		}
		rows++
		_, err = sw.Write(buf)
		return err
	})
	clear(buf)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := sw.Write(appendEnd(nil, rows)); err != nil {
		return err
	}
	if err := sw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("backup: write: %w", err)
	}
	return nil
}

// encodeHeader returns the header bytes: magic, length, JSON.
func encodeHeader(h Header) ([]byte, error) {
	j, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("backup: header: %w", err)
	}
	if len(j) > maxHeaderSize {
		return nil, errors.New("backup: header too long")
	}
	b := make([]byte, 0, len(Magic)+4+len(j))
	b = append(b, Magic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(j))) // #nosec G115 -- bounded above
	return append(b, j...), nil
}

// readHeader reads and parses the header; it returns the header bytes too.
func readHeader(r io.Reader) (Header, []byte, error) {
	var h Header
	pre := make([]byte, len(Magic)+4)
	if _, err := io.ReadFull(r, pre); err != nil {
		return h, nil, readErr(err, ErrFormat)
	}
	if string(pre[:len(Magic)]) != Magic {
		return h, nil, ErrFormat
	}
	n := binary.BigEndian.Uint32(pre[len(Magic):])
	if n == 0 || n > maxHeaderSize {
		return h, nil, ErrFormat
	}
	hb := append(pre, make([]byte, n)...)
	if _, err := io.ReadFull(r, hb[len(pre):]); err != nil {
		return h, nil, readErr(err, ErrFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(hb[len(pre):]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil || dec.More() {
		return h, nil, ErrFormat
	}
	if h.Format != formatVersion || len(h.NoncePrefix) != prefixSize {
		return h, nil, ErrFormat
	}
	return h, hb, nil
}

// ReadHeader reads a backup's header without any key. It is NOT verified:
// use it to show what a file claims to be (when, from which dialect, which
// provider wrapped it), never to decide anything.
func ReadHeader(r io.Reader) (Header, error) {
	h, _, err := readHeader(r)
	return h, err
}

// readErr maps a premature end of input to sentinel and passes I/O errors
// through.
func readErr(err, sentinel error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return sentinel
	}
	return fmt.Errorf("backup: read: %w", err)
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("backup: cipher: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("backup: cipher: %w", err)
	}
	return a, nil
}

// Read restores the backup in r into dst, which must be empty. It unwraps
// the data key with p first: a root key other than the one that wrote the
// backup (or an edited header) fails with an error wrapping
// keyprovider.ErrUnwrap before any row reaches dst. Rows are decrypted and
// authenticated chunk by chunk and handed to dst.Import, which commits only
// once the whole stream has been verified (see the package doc); a damaged
// file fails with ErrCorrupt and leaves dst empty.
func Read(ctx context.Context, r io.Reader, p keyprovider.Provider, dst Importer) error {
	br := bufio.NewReaderSize(r, chunkSize+tagSize)
	h, hb, err := readHeader(br)
	if err != nil {
		return err
	}
	var lb [4]byte
	if _, err := io.ReadFull(br, lb[:]); err != nil {
		return readErr(err, ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n == 0 || n > maxWrapped {
		return ErrCorrupt
	}
	wrapped := make([]byte, n)
	if _, err := io.ReadFull(br, wrapped); err != nil {
		return readErr(err, ErrCorrupt)
	}
	dek, err := p.Unwrap(ctx, wrapped, hb)
	if errors.Is(err, keyprovider.ErrUnwrap) {
		// The provider name is a label, never key material.
		return fmt.Errorf("backup: the data key does not open under root key %s (the backup was written under %q, or its header was altered): %w",
			p.Name(), h.Provider, err)
	}
	if err != nil {
		return fmt.Errorf("backup: unwrap the data key: %w", err)
	}
	defer clear(dek)
	if len(dek) != dataKeySize {
		return ErrCorrupt
	}
	importRows := func(next func() (string, []any, error)) error { return dst.Import(ctx, next) }
	if sv, ok := dst.(SchemaVersioner); ok && h.Schema != 0 {
		v, err := sv.SchemaVersion(ctx)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		switch {
		case h.Schema > v:
			return fmt.Errorf("%w: the backup is at %d, newer than this Coffer's %d: restore it with a newer Coffer", ErrSchema, h.Schema, v)
		case h.Schema < v:
			oi, ok := dst.(OlderSchemaImporter)
			if !ok {
				return fmt.Errorf("%w: backup at %d, store at %d", ErrSchema, h.Schema, v)
			}
			schema := h.Schema
			importRows = func(next func() (string, []any, error)) error { return oi.ImportSchema(ctx, schema, next) }
		}
	}
	aead, err := newAEAD(dek)
	if err != nil {
		return err
	}
	dec := newRowDecoder(newStreamReader(br, aead, h.NoncePrefix, hb))
	finished := false
	err = importRows(func() (string, []any, error) {
		if err := ctx.Err(); err != nil {
			return "", nil, err
		}
		t, row, err := dec.next()
		switch {
		case errors.Is(err, io.EOF):
			finished = true
			return "", nil, io.EOF
		case errors.Is(err, errRows):
			// Authenticated yet malformed: written by a broken writer.
			return "", nil, fmt.Errorf("%w (%v)", ErrCorrupt, err)
		}
		return t, row, err
	})
	if err != nil {
		return fmt.Errorf("backup: restore: %w", err)
	}
	if !finished {
		return errors.New("backup: restore: the store stopped reading before the end of the backup")
	}
	return nil
}
