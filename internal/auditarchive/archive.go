package auditarchive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/audit"
)

// Info describes an archived segment.
type Info struct {
	ID       string `json:"id"` // audit.SegmentID
	Node     string `json:"node"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Bytes    int64  `json:"bytes"`
}

// ErrNotFound: no segment of that id in the archive.
var ErrNotFound = errors.New("auditarchive: no such segment")

// ErrConflict: the archive holds another file under the segment's id.
var ErrConflict = errors.New("auditarchive: the archive holds a different segment under this id")

// Archive stores sealed segment files by id. Implementations must make Put
// atomic and durable: when it returns nil the whole file is stored and
// survives a crash; a crash during Put leaves either nothing or the whole
// file under id, never part of it. Put of an id already stored with the
// same bytes is no error (a resumed run), with other bytes ErrConflict.
type Archive interface {
	Put(ctx context.Context, id string, data []byte) error
	// Get returns the file stored under id, or an error wrapping ErrNotFound.
	Get(ctx context.Context, id string) ([]byte, error)
	// List returns every stored segment, by node and first seq.
	List(ctx context.Context) ([]Info, error)
	// Stat describes the segment stored under id, or wraps ErrNotFound.
	Stat(ctx context.Context, id string) (Info, error)
}

// FileArchive is an Archive in a directory (meant to be another volume):
// DIR/NODE/FIRST-LAST.seg.gz, NODE path-escaped, seqs zero-padded. Each
// file is written to a temporary name in its directory, synced, renamed,
// and the directory synced.
type FileArchive struct{ Dir string }

const segSuffix = ".seg.gz"

// path returns where segment id lives.
func (a FileArchive) path(id string) (string, Info, error) {
	node, first, last, err := audit.ParseSegmentID(id)
	if err != nil {
		return "", Info{}, err
	}
	dir := url.PathEscape(node)
	if dir == "." || dir == ".." || dir == "" {
		return "", Info{}, fmt.Errorf("auditarchive: node name %q cannot name a directory", node)
	}
	name := fmt.Sprintf("%020d-%020d%s", first, last, segSuffix)
	return filepath.Join(a.Dir, dir, name), Info{ID: id, Node: node, FirstSeq: first, LastSeq: last}, nil
}

// Put implements Archive.
func (a FileArchive) Put(ctx context.Context, id string, data []byte) error {
	p, _, err := a.path(id)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(p); err == nil { // #nosec G304 -- under the configured archive directory, name built from a parsed id
		if bytes.Equal(old, data) {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrConflict, id)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auditarchive: put %s: %w", id, err)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("auditarchive: put %s: %w", id, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("auditarchive: put %s: %w", id, err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- random name in the archive directory
	if err != nil {
		return fmt.Errorf("auditarchive: put %s: %w", id, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, p)
	}
	if werr == nil {
		werr = syncDir(dir)
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("auditarchive: put %s: %w", id, werr)
	}
	return ctx.Err()
}

func syncDir(dir string) error {
	d, err := os.Open(dir) // #nosec G304 -- the archive's own directory
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Get implements Archive.
func (a FileArchive) Get(_ context.Context, id string) ([]byte, error) {
	p, _, err := a.path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p) // #nosec G304 -- under the configured archive directory
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("auditarchive: get %s: %w", id, err)
	}
	return b, nil
}

// Stat implements Archive.
func (a FileArchive) Stat(_ context.Context, id string) (Info, error) {
	p, info, err := a.path(id)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Info{}, fmt.Errorf("auditarchive: stat %s: %w", id, err)
	}
	info.Bytes = st.Size()
	return info, nil
}

// List implements Archive. Temporary files (a Put cut short) and files
// that are not named as segments are left out.
func (a FileArchive) List(_ context.Context) ([]Info, error) {
	nodes, err := os.ReadDir(a.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auditarchive: list: %w", err)
	}
	var out []Info
	for _, nd := range nodes {
		if !nd.IsDir() {
			continue
		}
		node, err := url.PathUnescape(nd.Name())
		if err != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(a.Dir, nd.Name()))
		if err != nil {
			return nil, fmt.Errorf("auditarchive: list: %w", err)
		}
		for _, f := range files {
			name, ok := strings.CutSuffix(f.Name(), segSuffix)
			if !ok || strings.HasPrefix(name, ".") {
				continue
			}
			a, b, ok := strings.Cut(name, "-")
			first, err1 := strconv.ParseUint(a, 10, 64)
			last, err2 := strconv.ParseUint(b, 10, 64)
			if !ok || err1 != nil || err2 != nil || first == 0 || last < first {
				continue
			}
			fi, err := f.Info()
			if err != nil {
				continue
			}
			out = append(out, Info{ID: audit.SegmentID(node, first, last), Node: node, FirstSeq: first, LastSeq: last, Bytes: fi.Size()})
		}
	}
	sortInfos(out)
	return out, nil
}

func sortInfos(s []Info) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Node != s[j].Node {
			return s[i].Node < s[j].Node
		}
		return s[i].FirstSeq < s[j].FirstSeq
	})
}
