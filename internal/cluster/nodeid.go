package cluster

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// IDFileName is the file in the data directory that keeps a node's
// generated id.
const IDFileName = "node-id"

// idFile is the content of IDFileName: the id, and where it was made. An
// id is this data directory's only where it was made: a copy elsewhere
// (another host or path) makes its own.
type idFile struct {
	Node string `json:"node"`
	Host string `json:"host"`
	Dir  string `json:"dir"`
}

// IDSource says where ResolveID found a node id.
type IDSource string

// The sources of a node id.
const (
	IDKept      IDSource = "kept"      // the data directory's id file, made here
	IDGenerated IDSource = "generated" // made now: no id file yet
	IDCopied    IDSource = "copied"    // made now: the id file was made on another host or path
	IDLegacy    IDSource = "legacy"    // the host name, the default before ids were generated, adopted and kept
)

// ResolveID returns the node id of the data directory dir on host: the one
// its id file keeps when that file was made here, otherwise a new one,
// written to the file (mode 0600) before it is returned. legacy, if not
// empty, is adopted instead of a generated id when dir has no id file yet:
// the host name a node of an older version wrote its audit chain under.
func ResolveID(dir, host, legacy string, rand io.Reader) (string, IDSource, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", fmt.Errorf("cluster: node id: %w", err)
	}
	path := filepath.Join(abs, IDFileName)
	b, err := os.ReadFile(path) // #nosec G304 -- DIR/node-id, DIR is the operator's data directory
	source := IDGenerated
	switch {
	case err == nil:
		var f idFile
		if json.Unmarshal(b, &f) == nil && ValidID(f.Node) {
			if f.Host == host && f.Dir == abs {
				return f.Node, IDKept, nil
			}
			source = IDCopied
		} else {
			return "", "", fmt.Errorf("cluster: node id: %s is not a node id file: remove it to make a new id", path)
		}
	case errors.Is(err, fs.ErrNotExist):
		if legacy != "" && ValidID(legacy) {
			source = IDLegacy
		}
	default:
		return "", "", fmt.Errorf("cluster: node id: %w", err)
	}
	id := legacy
	if source != IDLegacy {
		if id, err = NewID(host, rand); err != nil {
			return "", "", err
		}
	}
	if err := writeIDFile(path, idFile{Node: id, Host: host, Dir: abs}); err != nil {
		return "", "", err
	}
	return id, source, nil
}

// NewID makes a node id: the host name (cut short, reduced to letters,
// digits, '.', '-' and '_') and 8 random hex digits.
func NewID(host string, rand io.Reader) (string, error) {
	var b [4]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("cluster: node id: %w", err)
	}
	h := strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '.' || r == '-' || r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return r
		}
		return '-'
	}, host)
	if len(h) > 48 {
		h = h[:48]
	}
	if h == "" {
		h = "coffer"
	}
	return h + "-" + hex.EncodeToString(b[:]), nil
}

// ValidID reports whether id can name a node: 1 to 128 bytes, no space or
// control character (as the node setting).
func ValidID(id string) bool {
	return id != "" && len(id) <= 128 && !strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// writeIDFile replaces path with f, through a temporary file renamed over
// it, so a crash never leaves half an id.
func writeIDFile(path string, f idFile) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("cluster: node id: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".node-id-*")
	if err != nil {
		return fmt.Errorf("cluster: write node id: %w", err)
	}
	fail := func(err error) error {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("cluster: write node id: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("cluster: write node id: %w", err)
	}
	return nil
}

// KeptID returns the id the data directory's id file keeps for this host
// and path, without making one: for offline commands, which must not
// change the id a serving node uses.
func KeptID(dir, host string) (string, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(abs, IDFileName)) // #nosec G304 -- DIR/node-id
	if err != nil {
		return "", false
	}
	var f idFile
	if json.Unmarshal(b, &f) != nil || !ValidID(f.Node) || f.Host != host || f.Dir != abs {
		return "", false
	}
	return f.Node, true
}
