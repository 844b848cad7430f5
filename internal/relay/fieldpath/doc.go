// Package fieldpath is the one grammar of the relay's field paths: dotted
// names with "[*]" for every element of an array ("card.number",
// "items[*].card", "[*].email").
//
// It owns parsing a path, printing it back, and matching the names of a
// JSON document or the keys of a form against it. It must never see a
// value: it deals in names only, and its errors quote the path (config,
// never data).
package fieldpath
