package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/cofferhq/coffer/internal/config"
	"github.com/cofferhq/coffer/internal/crypto/keyprovider"
)

// Names the development setup leaves behind (see `coffer dev`).
const (
	devDirName   = ".coffer-dev"
	devCredsFile = "dev-credentials.json"
)

// checkDev flags a development deployment: config dev: true, a data
// directory named .coffer-dev, or the admin credentials kept on disk.
func checkDev(st *state) []Finding {
	var why []string
	if st.cfg.Dev {
		why = append(why, "config has dev: true")
	}
	dirs := uniqueDirs(st.dir, st.cfg.DataDir)
	for _, d := range dirs {
		if filepath.Base(d) == devDirName {
			why = append(why, "data directory is named "+devDirName)
			break
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, devCredsFile)
		if _, err := os.Lstat(p); err == nil {
			why = append(why, p+" holds the admin client's credentials")
		}
	}
	if len(why) == 0 {
		return nil
	}
	return []Finding{{
		ID: "dev.mode", Severity: High,
		Title:  "development deployment: credentials kept on disk",
		Detail: strings.Join(why, "; "),
		Fix:    "run `coffer init` for a real deployment (dev: false) and delete " + devCredsFile,
	}}
}

// uniqueDirs returns the non-empty, distinct directories among dirs.
func uniqueDirs(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		d = filepath.Clean(d)
		dup := false
		for _, o := range out {
			dup = dup || o == d
		}
		if !dup {
			out = append(out, d)
		}
	}
	return out
}

// checkDataDir wants the data directory to exist, be 0700 and belong to
// the running user.
func checkDataDir(st *state) []Finding {
	dir := st.cfg.DataDir
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []Finding{{
			ID: "data_dir.missing", Severity: High,
			Title: "the data directory does not exist", Detail: dir,
			Fix: "run `coffer init --data-dir DIR`, or point data_dir at the deployment",
		}}
	case err != nil:
		return []Finding{unchecked("data_dir.permissions", "the data directory", err)}
	case !fi.IsDir():
		return []Finding{{
			ID: "data_dir.missing", Severity: High,
			Title: "the data directory is not a directory", Detail: dir,
			Fix: "point data_dir at the deployment's directory",
		}}
	}
	var out []Finding
	perm := fi.Mode().Perm()
	switch {
	case perm&0o022 != 0:
		out = append(out, Finding{
			ID: "data_dir.permissions", Severity: High,
			Title:  "the data directory is writable by group or others",
			Detail: fmt.Sprintf("%s has mode %04o: others can replace the keys, certificates and database", dir, perm),
			Fix:    "chmod 700 " + dir,
		})
	case perm&0o077 != 0:
		out = append(out, Finding{
			ID: "data_dir.permissions", Severity: Medium,
			Title:  "the data directory is open to group or others",
			Detail: fmt.Sprintf("%s has mode %04o, want 0700", dir, perm),
			Fix:    "chmod 700 " + dir,
		})
	}
	out = append(out, ownerFinding("data_dir.owner", "the data directory", dir, fi)...)
	return out
}

// ownerFinding flags a file or directory the running user does not own.
func ownerFinding(id, what, path string, fi fs.FileInfo) []Finding {
	uid, foreign := foreignOwner(fi)
	if !foreign {
		return nil
	}
	return []Finding{{
		ID: id, Severity: Medium,
		Title:  what + " belongs to another user",
		Detail: fmt.Sprintf("%s is owned by uid %d, not uid %d", path, uid, os.Getuid()),
		Fix:    "run Coffer (and the doctor) as one dedicated user that owns its files: chown",
	}}
}

// checkConfigFile wants coffer.yaml writable only by its owner, and not
// readable by others when it holds a secret.
func checkConfigFile(st *state) []Finding {
	path := filepath.Join(st.cfg.Dir(), config.FileName)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // configured by the environment alone
	}
	if err != nil {
		return []Finding{unchecked("config.permissions", "the configuration file", err)}
	}
	perm := fi.Mode().Perm()
	switch {
	case perm&0o022 != 0:
		return []Finding{{
			ID: "config.permissions", Severity: High,
			Title:  "the configuration file is writable by group or others",
			Detail: fmt.Sprintf("%s has mode %04o: others can change where keys and data come from", path, perm),
			Fix:    "chmod 600 " + path,
		}}
	case perm&0o044 != 0 && configHoldsSecret(st.cfg):
		return []Finding{{
			ID: "config.permissions", Severity: High,
			Title:  "the configuration holds a secret and its file is readable by group or others",
			Detail: fmt.Sprintf("%s has mode %04o", path, perm),
			Fix:    "chmod 600 " + path,
		}}
	case perm&0o077 != 0:
		return []Finding{{
			ID: "config.permissions", Severity: Low,
			Title:  "the configuration file is readable by group or others",
			Detail: fmt.Sprintf("%s has mode %04o, want 0600", path, perm),
			Fix:    "chmod 600 " + path,
		}}
	}
	return nil
}

// configHoldsSecret reports whether c carries a database password or a
// webhook secret.
func configHoldsSecret(c *config.Config) bool {
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return true
			}
		}
		if strings.Contains(strings.ToLower(c.DatabaseURL), "password=") {
			return true
		}
	}
	for _, w := range c.Detect.Webhooks {
		if w.Secret != "" {
			return true
		}
	}
	return false
}

// checkRootKey checks the root key's source: a key file that exists, is
// 0600 and belongs to the running user; or, outside development, the
// environment, which child processes and /proc/PID/environ can read.
func checkRootKey(st *state) []Finding {
	rk := st.cfg.RootKey
	switch rk.Provider {
	case config.ProviderEnv:
		if st.cfg.Dev {
			return nil
		}
		return []Finding{{
			ID: "root_key.env_provider", Severity: Medium,
			Title:  "the root key comes from an environment variable",
			Detail: "variable " + rk.Env + ": inherited by child processes and readable in /proc/PID/environ by the same user",
			Fix:    "keep the root key in a 0600 file (root_key.provider: file) or a KMS/HSM",
		}}
	case config.ProviderShamir:
		return checkShareCommitments(rk.CheckFile)
	case config.ProviderFile, "":
	default:
		return nil // config validation refuses other providers
	}
	path := rk.File
	lfi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []Finding{{
			ID: "root_key.missing", Severity: High,
			Title: "the root key file does not exist", Detail: path,
			Fix: "restore the root key from its backup; without it no data can be decrypted",
		}}
	}
	if err != nil {
		return []Finding{unchecked("root_key.permissions", "the root key file", err)}
	}
	fi := lfi
	var out []Finding
	if lfi.Mode()&fs.ModeSymlink != 0 {
		if fi, err = os.Stat(path); err != nil {
			return []Finding{unchecked("root_key.permissions", "the root key file", err)}
		}
		out = append(out, Finding{
			ID: "root_key.symlink", Severity: Low,
			Title:  "the root key file is a symbolic link",
			Detail: path + ": whoever can change the link chooses the key",
			Fix:    "set root_key.file to the key file itself",
		})
	}
	if !fi.Mode().IsRegular() {
		return append(out, Finding{
			ID: "root_key.missing", Severity: High,
			Title: "the root key file is not a regular file", Detail: path,
			Fix: "set root_key.file to the key file",
		})
	}
	perm := fi.Mode().Perm()
	switch {
	case perm&0o077 != 0:
		out = append(out, Finding{
			ID: "root_key.permissions", Severity: High,
			Title:  "the root key file is open to group or others",
			Detail: fmt.Sprintf("%s has mode %04o: whoever reads it can decrypt every value", path, perm),
			Fix:    "chmod 600 " + path + ", then consider the key exposed: rotate it and rewrap",
		})
	case perm != 0o600:
		out = append(out, Finding{
			ID: "root_key.permissions", Severity: Low,
			Title:  "the root key file's mode is not 0600",
			Detail: fmt.Sprintf("%s has mode %04o", path, perm),
			Fix:    "chmod 600 " + path,
		})
	}
	return append(out, ownerFinding("root_key.owner", "the root key file", path, fi)...)
}

// checkShareCommitments flags a shamir check file without a commitment to
// each share: the sealed server cannot refuse forged shares, which can
// delay unsealing.
func checkShareCommitments(path string) []Finding {
	b, err := os.ReadFile(path) // #nosec G304 -- the operator's root key check file
	if err != nil {
		return []Finding{unchecked("root_key.check_file", "the root key check file", err)}
	}
	s, err := keyprovider.NewSealed(b, nil)
	if err != nil {
		return []Finding{{
			ID: "root_key.check_file", Severity: High,
			Title: "the root key check file is not one coffer init wrote", Detail: path,
			Fix: "restore root-key.check from a backup of the data directory; without it no share unseals",
		}}
	}
	if s.Committed() {
		return nil
	}
	return []Finding{{
		ID: "root_key.share_commitments", Severity: Medium,
		Title: "the root key check file has no share commitments",
		Detail: path + ": a sealed server cannot tell a forged share from a right one until they fail to combine, " +
			"so anyone who reaches POST /v1/sys/unseal can delay unsealing",
		Fix: "unseal once with a release that commits to shares: the server rewrites the file (or see SECURITY.md, Root key)",
	}}
}

// checkTLSKeyFiles checks the server key (0600), the certificate (not
// writable by others: the server reloads it when it changes) and the CA
// key, which a serving node does not need.
func checkTLSKeyFiles(st *state) []Finding {
	t := st.cfg.TLS
	var out []Finding
	if fi, err := os.Stat(t.KeyFile); errors.Is(err, fs.ErrNotExist) {
		out = append(out, Finding{
			ID: "tls.key_missing", Severity: High,
			Title: "the server's TLS key file does not exist", Detail: t.KeyFile,
			Fix: "issue a server certificate (`coffer cert`) or point tls.key_file at it",
		})
	} else if err != nil {
		out = append(out, unchecked("tls.key_permissions", "the TLS key file", err))
	} else {
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, Finding{
				ID: "tls.key_permissions", Severity: High,
				Title:  "the server's TLS key is readable by group or others",
				Detail: fmt.Sprintf("%s has mode %04o", t.KeyFile, perm),
				Fix:    "chmod 600 " + t.KeyFile + ", then issue a new server certificate and key",
			})
		}
		out = append(out, ownerFinding("tls.key_owner", "the server's TLS key", t.KeyFile, fi)...)
	}
	if fi, err := os.Stat(t.CertFile); err == nil {
		if perm := fi.Mode().Perm(); perm&0o022 != 0 {
			out = append(out, Finding{
				ID: "tls.cert_permissions", Severity: High,
				Title:  "the server certificate is writable by group or others",
				Detail: fmt.Sprintf("%s has mode %04o: the server reloads it when it changes", t.CertFile, perm),
				Fix:    "chmod 644 " + t.CertFile,
			})
		}
	}
	if fi, err := os.Stat(t.CAKeyFile); err == nil {
		out = append(out, Finding{
			ID: "tls.ca_key_online", Severity: Low,
			Title:  "the CA key is on a serving node",
			Detail: t.CAKeyFile + ": whoever takes the node can issue client certificates",
			Fix:    "move the CA key offline and bring it back only to issue certificates",
		})
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, Finding{
				ID: "tls.ca_key_permissions", Severity: High,
				Title:  "the CA key is readable by group or others",
				Detail: fmt.Sprintf("%s has mode %04o", t.CAKeyFile, perm),
				Fix:    "chmod 600 " + t.CAKeyFile + ", then consider the CA exposed and replace it",
			})
		}
	}
	return out
}

// sqliteFiles returns the SQLite database file and its WAL and shared
// memory files.
func sqliteFiles(path string) []string {
	return []string{path, path + "-wal", path + "-shm"}
}

// checkDatabaseFile wants the SQLite files 0600. It runs before the store
// is opened, which would set the main file's mode.
func checkDatabaseFile(st *state) []Finding {
	kind, path := st.cfg.Database()
	if kind != config.DatabaseSQLite {
		return nil
	}
	var out []Finding
	for i, p := range sqliteFiles(path) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			if i == 0 {
				return []Finding{{
					ID: "database.missing", Severity: High,
					Title: "the SQLite database does not exist", Detail: path,
					Fix: "run `coffer init`, or restore the database from a backup",
				}}
			}
			continue
		}
		if err != nil {
			out = append(out, unchecked("database.file_permissions", "the database file", err))
			continue
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			out = append(out, Finding{
				ID: "database.file_permissions", Severity: High,
				Title:  "the SQLite database is open to group or others",
				Detail: fmt.Sprintf("%s has mode %04o: others can copy the sealed data or rewrite the audit log", p, perm),
				Fix:    "chmod 600 " + p,
			})
		}
	}
	return out
}
