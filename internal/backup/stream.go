package backup

import (
	"bufio"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const (
	chunkSize   = 64 << 10 // plaintext bytes per chunk
	prefixSize  = 7        // random nonce prefix
	tagSize     = 16       // AES-GCM tag
	lastFlagPos = prefixSize + 4
)

// nonce builds prefix || counter || last flag.
func nonce(dst *[12]byte, prefix []byte, counter uint32, last bool) []byte {
	copy(dst[:prefixSize], prefix)
	binary.BigEndian.PutUint32(dst[prefixSize:lastFlagPos], counter)
	dst[lastFlagPos] = 0
	if last {
		dst[lastFlagPos] = 1
	}
	return dst[:]
}

// streamWriter seals what is written to it into STREAM chunks on w. Close
// seals the last chunk; without it the output is a truncated stream.
type streamWriter struct {
	w       io.Writer
	aead    cipher.AEAD
	prefix  []byte
	aad     []byte
	counter uint32
	buf     []byte // pending plaintext, at most chunkSize
	out     []byte
	nonce   [12]byte
	err     error
}

func newStreamWriter(w io.Writer, aead cipher.AEAD, prefix, aad []byte) *streamWriter {
	return &streamWriter{
		w: w, aead: aead, prefix: prefix, aad: aad,
		buf: make([]byte, 0, chunkSize),
		out: make([]byte, 0, chunkSize+tagSize),
	}
}

// Write buffers p and seals every chunk that is full and followed by more
// data; a full chunk at the end waits for Close to become the last one.
func (s *streamWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n := 0
	for len(p) > 0 {
		if len(s.buf) == chunkSize {
			if err := s.seal(false); err != nil {
				return n, err
			}
		}
		k := copy(s.buf[len(s.buf):chunkSize], p)
		s.buf = s.buf[:len(s.buf)+k]
		p = p[k:]
		n += k
	}
	return n, nil
}

// Close seals the pending plaintext as the last chunk.
func (s *streamWriter) Close() error {
	if s.err != nil {
		return s.err
	}
	if err := s.seal(true); err != nil {
		return err
	}
	s.err = errors.New("backup: stream already closed")
	return nil
}

func (s *streamWriter) seal(last bool) error {
	if !last && s.counter == math.MaxUint32 {
		s.err = errors.New("backup: stream too long")
		return s.err
	}
	s.out = s.aead.Seal(s.out[:0], nonce(&s.nonce, s.prefix, s.counter, last), s.buf, s.aad)
	if _, err := s.w.Write(s.out); err != nil {
		s.err = fmt.Errorf("backup: write: %w", err)
		return s.err
	}
	s.counter++
	s.buf = s.buf[:0]
	return nil
}

// streamReader opens STREAM chunks from r. It returns plaintext only from
// authenticated chunks, and io.EOF only after the last chunk has been
// authenticated with nothing after it; anything else is ErrCorrupt (or the
// reader's own error).
type streamReader struct {
	r       *bufio.Reader
	aead    cipher.AEAD
	prefix  []byte
	aad     []byte
	counter uint32
	in      []byte
	plain   []byte
	pos     int
	done    bool
	nonce   [12]byte
	err     error
}

func newStreamReader(r *bufio.Reader, aead cipher.AEAD, prefix, aad []byte) *streamReader {
	return &streamReader{
		r: r, aead: aead, prefix: prefix, aad: aad,
		in:    make([]byte, chunkSize+tagSize),
		plain: make([]byte, 0, chunkSize),
	}
}

// Read implements io.Reader.
func (s *streamReader) Read(p []byte) (int, error) {
	if err := s.fill(); err != nil {
		return 0, err
	}
	n := copy(p, s.plain[s.pos:])
	s.pos += n
	return n, nil
}

// ReadByte implements io.ByteReader.
func (s *streamReader) ReadByte() (byte, error) {
	if err := s.fill(); err != nil {
		return 0, err
	}
	b := s.plain[s.pos]
	s.pos++
	return b, nil
}

// fill makes unread plaintext available, opening chunks as needed.
func (s *streamReader) fill() error {
	for s.pos == len(s.plain) {
		if s.err != nil {
			return s.err
		}
		if s.done {
			return io.EOF
		}
		if err := s.open(); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

func (s *streamReader) open() error {
	n, err := io.ReadFull(s.r, s.in)
	last := false
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		last = true
	case err != nil:
		return fmt.Errorf("backup: read: %w", err)
	default:
		// A full chunk is the last one only if nothing follows it.
		_, perr := s.r.Peek(1)
		switch {
		case errors.Is(perr, io.EOF):
			last = true
		case perr != nil:
			return fmt.Errorf("backup: read: %w", perr)
		}
	}
	if n < tagSize {
		return ErrCorrupt
	}
	if !last && s.counter == math.MaxUint32 {
		return ErrCorrupt
	}
	pt, err := s.aead.Open(s.plain[:0], nonce(&s.nonce, s.prefix, s.counter, last), s.in[:n], s.aad)
	if err != nil {
		return ErrCorrupt
	}
	s.plain, s.pos = pt, 0
	s.counter++
	s.done = last
	return nil
}
