package coffer_test

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nonStdImports returns the imports of the package in dir (its non-test
// files, as the build sees them) that are not in the standard library.
func nonStdImports(t *testing.T, dir string) []string {
	t.Helper()
	pkg, err := build.ImportDir(dir, 0)
	if err != nil {
		t.Fatalf("import %s: %v", dir, err)
	}
	var out []string
	for _, path := range pkg.Imports {
		if path == "C" {
			out = append(out, path)
			continue
		}
		// A standard library path has no dot in its first element and
		// is a directory of GOROOT/src.
		first, _, _ := strings.Cut(path, "/")
		if strings.Contains(first, ".") {
			out = append(out, path)
		} else if _, err := os.Stat(filepath.Join(build.Default.GOROOT, "src", path)); err != nil {
			out = append(out, path)
		}
	}
	return out
}

// TestStdlibOnly keeps the domain package what its documentation says it
// is: importing the standard library and nothing else, so that every other
// package can depend on it and it on none of them. (The standard library
// imports only itself, so direct imports are the whole story.)
func TestStdlibOnly(t *testing.T) {
	if got := nonStdImports(t, "."); len(got) > 0 {
		t.Errorf("internal/coffer imports %v; the domain must import only the standard library", got)
	}
	// The check itself bites: the store, an adapter, imports a driver.
	if got := nonStdImports(t, filepath.Join("..", "store")); !slices.Contains(got, "github.com/cofferhq/coffer/internal/coffer") {
		t.Errorf("nonStdImports(internal/store) = %v; want it to list internal/coffer", got)
	}
}
