// Package doccheck checks Coffer's Markdown documentation against the code:
// every `coffer` subcommand and flag a document names must exist in the
// command line, every COFFER_* environment variable must be one the code
// reads, every dotted configuration key (`audit.file`, and every key of a
// YAML block headed `# coffer.yaml`) must be one internal/config accepts,
// and every relative link must resolve (anchors included).
//
// # What it owns
//
//   - Finding the documents (Files) and what in them names a command, a
//     variable, a key or a link: commands and keys only in code (inline
//     code and shell, console and YAML blocks), variables anywhere, links
//     outside code.
//   - Comparing them with a Truth the caller derives from the real code:
//     the command tree comes from the cobra commands themselves (the test in
//     cmd/coffer builds it), variables from config.Keys and the COFFER_*
//     literals of the sources (CodeEnvNames), keys from config.Config.
//
// # What it must never do
//
// It never runs a command, reads a network or writes a file: it reads
// documents and source files and reports findings, each with its file and
// line, so that a test fails naming exactly what to fix.
package doccheck
