package doccheck

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/cofferhq/coffer/internal/config"
)

// Command is one command of the CLI as the documents may name it.
type Command struct {
	// Flags holds every flag the command takes, local and inherited, long
	// ("--data-dir") and short ("-f") forms, --help and -h included.
	Flags map[string]bool
	// Subs are its subcommands by name (aliases included).
	Subs map[string]*Command
}

// Truth is what exists in the code.
type Truth struct {
	// Root is the `coffer` command.
	Root *Command
	// Env holds every COFFER_* variable the code reads.
	Env map[string]bool
	// Names holds the dotted names the code uses as strings (audit
	// actions such as keys.rotate, event kinds such as auth.bruteforce,
	// doctor findings such as audit.no_witness): a document may name them
	// although they are not config keys.
	Names map[string]bool
}

// Finding is one thing a document names that does not exist.
type Finding struct {
	File string // relative to the checked root, with forward slashes
	Line int    // 1-based
	Msg  string
}

// String returns "FILE:LINE: MSG".
func (f Finding) String() string { return fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Msg) }

// skipDir reports whether Files and CodeEnvNames skip a directory.
func skipDir(name string) bool {
	switch name {
	case "node_modules", "testdata", "dist", "vendor", "__pycache__":
		return true
	}
	return strings.HasPrefix(name, ".") && name != "." && name != ".ci"
}

// Files returns the Markdown documents under root, relative and sorted:
// every *.md outside hidden, testdata, node_modules, dist and vendor
// directories.
func Files(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("doccheck: listing documents: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

var (
	htmlCommentRe  = regexp.MustCompile(`<!--.*?-->`)
	trailingWantRe = regexp.MustCompile(`\s# want: .*$`)
	envRe          = regexp.MustCompile(`COFFER_[A-Z0-9_]*[A-Z0-9](_?\*)?`)
	quotedEnvRe    = regexp.MustCompile("[\"'`]COFFER_[A-Z0-9_]*[A-Z0-9]")
)

// CodeEnvNames returns the COFFER_* variables the code under root reads:
// those of config.Keys, and every COFFER_* string literal of the Go,
// Python, TypeScript and JavaScript sources, and every COFFER_* name in
// shell scripts and Makefiles (testdata and dependencies left out).
func CodeEnvNames(root string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, k := range config.Keys() {
		out[config.EnvName(k)] = true
	}
	err := walkSources(root, func(p string) *regexp.Regexp {
		name := path.Base(p)
		switch ext := path.Ext(name); {
		case ext == ".go" || ext == ".py" || ext == ".ts" || ext == ".js":
			return quotedEnvRe
		case ext == ".sh" || name == "Makefile" || (path.Base(path.Dir(p)) == ".ci" && ext == ""):
			return envRe
		}
		return nil
	}, func(m []byte) {
		out[strings.TrimLeft(strings.TrimSuffix(string(m), "*"), "\"'`")] = true
	})
	return out, err
}

// walkSources reads, through an os.Root (no path may leave root, even by
// a symbolic link swapped in during the walk), every file under root that
// pick gives a pattern for, and calls found with each match.
func walkSources(root string, pick func(path string) *regexp.Regexp, found func(match []byte)) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("doccheck: %w", err)
	}
	defer r.Close()
	fsys := r.FS()
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && skipDir(d.Name()) {
				return fs.SkipDir
			}
			return nil
		}
		re := pick(p)
		if re == nil {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAll(b, -1) {
			found(m)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("doccheck: reading sources: %w", err)
	}
	return nil
}

var dottedLiteralRe = regexp.MustCompile(`"([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)"`)

// CodeDottedNames returns the dotted string literals ("keys.rotate",
// "audit.outage") of the Go sources under root, tests and testdata left out.
func CodeDottedNames(root string) (map[string]bool, error) {
	out := map[string]bool{}
	err := walkSources(root, func(p string) *regexp.Regexp {
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			return dottedLiteralRe
		}
		return nil
	}, func(m []byte) {
		out[strings.Trim(string(m), "\"")] = true
	})
	return out, err
}

// Check reads each file (relative to root) and returns every finding, in
// file and line order.
func Check(root string, files []string, t Truth) ([]Finding, error) {
	c := &checker{root: root, t: t, anchors: map[string]map[string]bool{}}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f))) // #nosec G304 -- a document of the repository being checked
		if err != nil {
			return nil, fmt.Errorf("doccheck: %w", err)
		}
		c.file(f, b)
	}
	return c.out, nil
}

type checker struct {
	root    string
	t       Truth
	out     []Finding
	anchors map[string]map[string]bool // file → heading anchors
}

func (c *checker) add(file string, line int, format string, args ...any) {
	c.out = append(c.out, Finding{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// shellLangs are the fenced block languages whose lines are commands (a
// block with no language is text: diagrams, output).
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true, "console": true, "zsh": true, "ini": true, "systemd": true}

func (c *checker) file(name string, b []byte) {
	lines := splitLines(b)
	var (
		fence     string // the opening fence while inside a block
		lang      string
		blockFrom int
		block     []string
		cont      string // a shell line continued with a backslash
		contLine  int
	)
	for i, line := range lines {
		n := i + 1
		line = htmlCommentRe.ReplaceAllString(line, "")
		if fence != "" && (shellLangs[lang] || lang == "yaml" || lang == "yml") {
			line = trailingWantRe.ReplaceAllString(line, "")
		}
		c.env(name, n, line)
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				if lang == "yaml" || lang == "yml" {
					c.yamlBlock(name, blockFrom, block)
				}
				fence, block = "", nil
				continue
			}
			block = append(block, line)
			if shellLangs[lang] {
				l := strings.TrimPrefix(strings.TrimSpace(line), "$ ")
				if cont == "" {
					contLine = n
				}
				if strings.HasSuffix(l, "\\") {
					cont += strings.TrimSuffix(l, "\\") + " "
					continue
				}
				c.commands(name, contLine, cont+l)
				cont = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" {
			fence, blockFrom, block, cont = f, n, nil, ""
			lang = strings.ToLower(strings.TrimSpace(strings.TrimLeft(trimmed, f[:1])))
			if j := strings.IndexAny(lang, " {,"); j >= 0 {
				lang = lang[:j]
			}
			continue
		}
		spans, rest := codeSpans(line)
		for _, s := range spans {
			c.commands(name, n, s)
			c.configKeys(name, n, s)
		}
		c.links(name, n, rest)
	}
}

func splitLines(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// fenceOf returns the fence that opens a code block on this line, or "".
func fenceOf(trimmed string) string {
	for _, ch := range []string{"`", "~"} {
		n := 0
		for n < len(trimmed) && trimmed[n] == ch[0] {
			n++
		}
		if n >= 3 {
			return strings.Repeat(ch, n)
		}
	}
	return ""
}

// codeSpans returns the inline code of a line and the line without it.
func codeSpans(line string) (spans []string, rest string) {
	var sb strings.Builder
	for i := 0; i < len(line); {
		if line[i] != '`' {
			sb.WriteByte(line[i])
			i++
			continue
		}
		n := 0
		for i+n < len(line) && line[i+n] == '`' {
			n++
		}
		delim := strings.Repeat("`", n)
		end := strings.Index(line[i+n:], delim)
		if end < 0 {
			sb.WriteString(line[i:])
			break
		}
		spans = append(spans, strings.TrimSpace(line[i+n:i+n+end]))
		sb.WriteString(" ")
		i += n + end + n
	}
	return spans, sb.String()
}

func (c *checker) env(file string, n int, line string) {
	for _, m := range envRe.FindAllString(line, -1) {
		if prefix, ok := strings.CutSuffix(m, "*"); ok {
			if !c.envPrefix(prefix) {
				c.add(file, n, "no COFFER_ variable starts with %s", prefix)
			}
			continue
		}
		if !c.t.Env[m] {
			c.add(file, n, "environment variable %s does not exist (not a config key, not read by the code)", m)
		}
	}
}

func (c *checker) envPrefix(prefix string) bool {
	for k := range c.t.Env {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}

var (
	// invocationRe finds `coffer`, `./bin/coffer` or `go run ./cmd/coffer`
	// as a command; `/var/lib/coffer` is a path.
	invocationRe = regexp.MustCompile(`(?:^|[\s(=;|&])(?:[\w./-]*(?:bin|cmd)/)?coffer`)
	wordRe       = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// commands checks every `coffer …` invocation in s.
func (c *checker) commands(file string, n int, s string) {
	for _, loc := range invocationRe.FindAllStringIndex(s, -1) {
		rest := s[loc[1]:]
		if rest != "" && !unicode.IsSpace(rune(rest[0])) {
			continue // coffer.yaml, coffer_http_requests_total
		}
		if f := strings.Fields(rest); len(f) > 0 && f[0] == "coffer" {
			continue // `sudo -u coffer coffer init`: the user, then the command
		}
		c.invocation(file, n, rest)
	}
}

// invocation checks the words after one `coffer`: subcommands while the
// command has them, then its flags, up to the end of the shell command.
func (c *checker) invocation(file string, n int, rest string) {
	cur, path, resolving := c.t.Root, "coffer", true
	for _, tok := range strings.Fields(rest) {
		if strings.ContainsAny(tok[:1], "|&;<>)#") || strings.HasPrefix(tok, "\\|") || strings.HasPrefix(tok, "2>") {
			return
		}
		tok = strings.Trim(tok, "[]{}()\"'`,")
		if tok == "" {
			continue
		}
		if strings.HasPrefix(tok, "-") {
			resolving = false
			name, _, _ := strings.Cut(tok, "=")
			name = strings.TrimRight(name, "\\|")
			long := strings.HasPrefix(name, "--") && len(name) > 2
			short := len(name) == 2 && unicode.IsLetter(rune(name[1]))
			if (long || short) && !cur.Flags[name] {
				c.add(file, n, "`%s` has no flag %s", path, name)
			}
			continue
		}
		if resolving && len(cur.Subs) > 0 {
			if sub := cur.Subs[tok]; sub != nil {
				cur, path = sub, path+" "+tok
				continue
			}
			if wordRe.MatchString(tok) {
				c.add(file, n, "`%s %s` is not a command", path, tok)
			}
			return
		}
		resolving = false
	}
}

// configRoots are the top-level config keys that have keys under them.
func configRoots() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeFor[config.Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		switch k := f.Type.Kind(); {
		case f.Type == durationType:
		case k == reflect.Struct, k == reflect.Map, k == reflect.Slice:
			out[name] = true
		}
	}
	return out
}

var (
	durationType = reflect.TypeFor[config.Duration]()
	dottedRe     = regexp.MustCompile(`(^|[^A-Za-z0-9_./@:-])([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+)`)
)

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// configKey reports whether segs name a key (or a section) of t: list
// items are transparent and any name is a map's key.
func configKey(t reflect.Type, segs []string) bool {
	for len(segs) > 0 {
		switch {
		case t == durationType:
			return false
		case t.Kind() == reflect.Struct:
			found := false
			for i := range t.NumField() {
				if f := t.Field(i); yamlName(f) == segs[0] {
					t, segs, found = f.Type, segs[1:], true
					break
				}
			}
			if !found {
				return false
			}
		case t.Kind() == reflect.Slice:
			t = t.Elem()
			if t.Kind() != reflect.Struct && t.Kind() != reflect.Map {
				return false
			}
		case t.Kind() == reflect.Map:
			t, segs = t.Elem(), segs[1:]
		default:
			return false
		}
	}
	return true
}

// configKeys checks the dotted names in inline code that start with a
// top-level config section (`audit.file`, `keys.rotate_after`).
func (c *checker) configKeys(file string, n int, s string) {
	roots := configRoots()
	for _, m := range dottedRe.FindAllStringSubmatchIndex(s, -1) {
		name := s[m[4]:m[5]]
		if next := s[m[5]:]; strings.HasPrefix(next, "(") || strings.HasPrefix(next, "/") || strings.HasPrefix(next, "-") {
			continue // a call, a path or a file name
		}
		segs := strings.Split(name, ".")
		if !roots[segs[0]] || c.t.Names[name] {
			continue
		}
		if !configKey(reflect.TypeFor[config.Config](), segs) {
			c.add(file, n, "config key %s does not exist", name)
		}
	}
}

// yamlBlock checks a YAML block whose first line is "# coffer.yaml": every
// key must be one of config.Config.
func (c *checker) yamlBlock(file string, from int, block []string) {
	if len(block) == 0 || strings.TrimSpace(block[0]) != "# coffer.yaml" {
		return
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(strings.Join(block, "\n")), &doc); err != nil {
		c.add(file, from, "coffer.yaml block does not parse: %v", err)
		return
	}
	if len(doc.Content) == 0 {
		return
	}
	c.yamlNode(file, from, doc.Content[0], reflect.TypeFor[config.Config](), "")
}

func (c *checker) yamlNode(file string, from int, nd *yaml.Node, t reflect.Type, prefix string) {
	switch {
	case t == durationType:
	case t.Kind() == reflect.Struct && nd.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(nd.Content); i += 2 {
			k, v := nd.Content[i], nd.Content[i+1]
			var ft reflect.Type
			for j := range t.NumField() {
				if f := t.Field(j); yamlName(f) == k.Value {
					ft = f.Type
				}
			}
			if ft == nil {
				c.add(file, from+k.Line, "config key %s%s does not exist", prefix, k.Value)
				continue
			}
			c.yamlNode(file, from, v, ft, prefix+k.Value+".")
		}
	case t.Kind() == reflect.Slice && nd.Kind == yaml.SequenceNode:
		for _, it := range nd.Content {
			c.yamlNode(file, from, it, t.Elem(), prefix)
		}
	case t.Kind() == reflect.Map && nd.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(nd.Content); i += 2 {
			c.yamlNode(file, from, nd.Content[i+1], t.Elem(), prefix+nd.Content[i].Value+".")
		}
	}
}

var linkRe = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// links checks the relative links of a line (inline code removed).
func (c *checker) links(file string, n int, line string) {
	for _, m := range linkRe.FindAllStringSubmatch(line, -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		p, frag, _ := strings.Cut(target, "#")
		dest := file
		if p != "" {
			if strings.HasPrefix(p, "/") {
				dest = strings.TrimPrefix(p, "/")
			} else {
				dest = filepath.ToSlash(filepath.Join(filepath.Dir(file), p))
			}
			if strings.HasPrefix(dest, "../") || dest == ".." {
				c.add(file, n, "link %s leaves the repository", target)
				continue
			}
			if _, err := os.Stat(filepath.Join(c.root, filepath.FromSlash(dest))); err != nil {
				c.add(file, n, "link %s does not resolve (%s does not exist)", target, dest)
				continue
			}
		}
		if frag != "" && strings.HasSuffix(dest, ".md") && !c.anchorsOf(dest)[frag] {
			c.add(file, n, "link %s: %s has no heading #%s", target, dest, frag)
		}
	}
}

// anchorsOf returns the heading anchors of a document, as GitHub makes them.
func (c *checker) anchorsOf(file string) map[string]bool {
	if a, ok := c.anchors[file]; ok {
		return a
	}
	a := map[string]bool{}
	c.anchors[file] = a
	b, err := os.ReadFile(filepath.Join(c.root, filepath.FromSlash(file))) // #nosec G304 -- a document of the repository being checked
	if err != nil {
		return a
	}
	seen := map[string]int{}
	fence := ""
	for _, line := range splitLines(b) {
		trimmed := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if f := fenceOf(trimmed); f != "" {
			fence = f
			continue
		}
		h := strings.TrimLeft(line, "#")
		if len(h) == len(line) || len(line)-len(h) > 6 || !strings.HasPrefix(h, " ") {
			continue
		}
		s := slug(h)
		if k := seen[s]; k > 0 {
			a[fmt.Sprintf("%s-%d", s, k)] = true
		} else {
			a[s] = true
		}
		seen[s]++
	}
	return a
}

var mdLinkRe = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor of a heading: lower case, links as their text,
// only letters, digits, spaces, '-' and '_' kept, spaces as '-'.
func slug(h string) string {
	h = mdLinkRe.ReplaceAllString(strings.TrimSpace(h), "$1")
	var sb strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			sb.WriteRune(r)
		case r == ' ':
			sb.WriteByte('-')
		}
	}
	return sb.String()
}
