package archtest

import (
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

const module = "github.com/cofferhq/coffer"

// pkg is one package of the module as its non-test files say.
type pkg struct {
	path    string   // import path
	dir     string   // directory relative to the module root
	imports []string // of its non-test files
	doc     string   // the package doc comment (of any non-test file)
	docFile string   // the file that carries it
	main    bool
}

var (
	loadOnce sync.Once
	loaded   map[string]*pkg
	loadErr  error
)

// load parses every package of the module (imports and doc comments of
// non-test files only), keyed by import path; once per test binary.
func load(t *testing.T) map[string]*pkg {
	t.Helper()
	loadOnce.Do(func() { loaded, loadErr = parseModule() })
	if loadErr != nil {
		t.Fatal(loadErr)
	}
	if len(loaded) < 20 {
		t.Fatalf("found only %d packages: is the walk right?", len(loaded))
	}
	return loaded
}

// pending names the rules that a change of issue 17 still being landed
// makes true; a rule listed here skips, naming the gap, while it does not
// hold. Remove an entry once its rule holds.
var pending = map[string]string{}

// check fails t with each violation of rule, or skips naming the gap while
// the rule is pending.
func check(t *testing.T, rule string, violations []string) {
	t.Helper()
	sort.Strings(violations)
	if gap := pending[rule]; gap != "" {
		if len(violations) > 0 {
			t.Skipf("%s (pending: %s): %s", rule, gap, strings.Join(violations, "; "))
		}
		t.Logf("%s holds now: remove it from pending", rule)
	}
	for _, v := range violations {
		t.Error(v)
	}
}

func parseModule() (map[string]*pkg, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(b), "module "+module+"\n") {
		return nil, fmt.Errorf("module root not found at %s: %v", root, err)
	}
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" ||
				name == "node_modules" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		ip := module
		if rel != "." {
			ip += "/" + rel
		}
		p := pkgs[ip]
		if p == nil {
			p = &pkg{path: ip, dir: rel}
			pkgs[ip] = p
		}
		p.main = f.Name.Name == "main"
		if f.Doc != nil && (p.doc == "" || name == "doc.go") {
			p.doc, p.docFile = f.Doc.Text(), name
		}
		for _, im := range f.Imports {
			s := strings.Trim(im.Path.Value, `"`)
			if !slices.Contains(p.imports, s) {
				p.imports = append(p.imports, s)
			}
		}
		return nil
	})
	return pkgs, err
}

// internalPkg returns the module-relative path of a module import ("" for
// others).
func internalPkg(path string) string {
	if path == module {
		return "."
	}
	rel, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return rel
}

// The domain (internal/coffer) importing only the standard library is kept
// by internal/coffer/deps_test.go, beside the package it guards.

// TestStoreImportsOnlyDomainAndEnvelope: the store is an adapter; of
// Coffer's packages it knows the domain and the envelope format only (its
// drivers and goose are third-party and allowed).
func TestStoreImportsOnlyDomainAndEnvelope(t *testing.T) {
	allowed := []string{"internal/coffer", "internal/crypto/envelope", "internal/store/migrations"}
	var bad []string
	for _, p := range load(t) {
		if p.dir != "internal/store" && !strings.HasPrefix(p.dir, "internal/store/migrations") {
			continue
		}
		for _, im := range p.imports {
			if rel := internalPkg(im); rel != "" && !slices.Contains(allowed, rel) {
				bad = append(bad, p.dir+" imports "+rel+": the store imports only the domain (internal/coffer) and internal/crypto/envelope")
			}
		}
	}
	check(t, "store", bad)
}

// TestOnlyTheCommandImportsApp: internal/app is the composition root;
// only cmd/coffer (and internal/testserver, the tests' way to start a
// server) import it, so no use case can hide in it and be reached from
// elsewhere.
func TestOnlyTheCommandImportsApp(t *testing.T) {
	var bad []string
	for _, p := range load(t) {
		if p.dir == "cmd/coffer" || p.dir == "internal/testserver" {
			continue
		}
		if slices.Contains(p.imports, module+"/internal/app") {
			bad = append(bad, p.dir+" imports internal/app: only cmd/coffer may (and tests, through internal/testserver)")
		}
	}
	check(t, "app", bad)
}

// TestHTTPAPIStaysAnAdapter: handlers decode, call a use case and encode;
// they never reach the store, the key ring or the policy engine.
func TestHTTPAPIStaysAnAdapter(t *testing.T) {
	p := load(t)[module+"/internal/httpapi"]
	if p == nil {
		t.Fatal("internal/httpapi not found")
	}
	var bad []string
	for _, im := range p.imports {
		for _, banned := range []string{"internal/store", "internal/crypto/keyring", "internal/policy"} {
			if rel := internalPkg(im); rel == banned || strings.HasPrefix(rel, banned+"/") {
				bad = append(bad, "internal/httpapi imports "+rel+": decisions belong to the use cases, storage and keys behind them")
			}
		}
	}
	check(t, "httpapi", bad)
}

// TestTestSupportNeverShips: the packages that exist for tests are never
// linked into the coffer binary.
func TestTestSupportNeverShips(t *testing.T) {
	pkgs := load(t)
	testOnly := regexp.MustCompile(`^internal/(testserver|testlog|testclock|openapitest|archtest|doccheck)$|test$`)
	seen := map[string]bool{}
	var walk func(path, via string)
	walk = func(path, via string) {
		if seen[path] {
			return
		}
		seen[path] = true
		p := pkgs[path]
		if p == nil {
			return
		}
		if testOnly.MatchString(p.dir) {
			t.Errorf("cmd/coffer links %s (through %s): test support never ships", p.dir, via)
		}
		for _, im := range p.imports {
			if internalPkg(im) != "" {
				walk(im, p.dir)
			}
		}
	}
	walk(module+"/cmd/coffer", "cmd/coffer")
	for _, must := range []string{"internal/app", "internal/store", "internal/httpapi"} {
		if !seen[module+"/"+must] {
			t.Errorf("the walk from cmd/coffer never reached %s: the import graph was not read", must)
		}
	}
}

// never is the sentence every package doc must have: what the package must
// never do.
var never = regexp.MustCompile(`(?i)\b(never|must not)\b`)

// TestEveryPackageSaysWhatItMustNeverDo: each package has a doc comment
// (in doc.go when it has more than one file) that names what it owns and
// what it must never do.
func TestEveryPackageSaysWhatItMustNeverDo(t *testing.T) {
	var dirs []string
	pkgs := load(t)
	for _, p := range pkgs {
		dirs = append(dirs, p.path)
	}
	sort.Strings(dirs)
	for _, path := range dirs {
		p := pkgs[path]
		switch {
		case p.doc == "":
			t.Errorf("%s has no package doc comment: add a doc.go saying what it owns and what it must never do", p.dir)
		case !never.MatchString(p.doc):
			t.Errorf("%s: its doc comment (%s) does not say what the package must never do", p.dir, p.docFile)
		}
	}
}

// appMaxLines bounds internal/app's non-test Go: the composition root
// builds components from config and runs serve, init and migrate; a use
// case that grows there belongs in its feature's package.
const appMaxLines = 1200

// TestAppStaysWiring: internal/app holds at most appMaxLines lines of
// non-test Go (as `wc -l` counts them).
func TestAppStaysWiring(t *testing.T) {
	dir := filepath.Join("..", "app")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	lines, files := 0, 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines += strings.Count(string(b), "\n")
		files++
	}
	if files == 0 {
		t.Fatal("no Go files in internal/app: is the path right?")
	}
	if lines > appMaxLines {
		t.Errorf("internal/app has %d lines of non-test Go, over %d: move what is not wiring into its feature's package", lines, appMaxLines)
	}
}
