// Package backup owns Coffer's backup file format: [Write] streams every
// row of a store into one encrypted, integrity-protected file, and [Read]
// loads such a file into an empty store. It also runs the two operations
// around it: [Backup] writes a deployment's backup file (audited on its
// offline chain), and [Restore] makes a new deployment from one, bringing
// back subject keys from a live deployment under the same root key.
//
// It must never write a row, a key or any decrypted byte anywhere but into
// the encrypted stream or the destination store; never hand the importer a
// row from a chunk that has not been authenticated; never let a restore
// commit before the whole file has been verified; and never make
// randomness of its own beyond defaulting to crypto/rand.Reader. A restore
// must leave nothing behind when it fails, and never write to the
// deployment it takes subject keys from.
//
// # Format
//
//	magic    "COFFER-BACKUP\x01"                 14 bytes
//	header   uint32 big-endian length, JSON      format, created, dialect, provider, schema, nonce prefix
//	key      uint32 big-endian length, blob      a random 32-byte data key wrapped by the root key
//	stream   AES-256-GCM chunks (STREAM)         the rows
//
// The header bytes are everything before the wrapped key (magic, length
// and JSON). They are the additional data of the root key's wrap and of
// every chunk, so a header cannot be edited or moved onto another file's
// stream: the data key no longer unwraps.
//
// The stream is the STREAM construction of Hoang, Reyhanitabar, Rogaway
// and Vizár ("Online authenticated-encryption and its nonce-reuse
// misuse-resistance", 2015) as age uses it: 64 KiB plaintext chunks, each
// sealed with the data key under the nonce
//
//	7-byte random prefix || 4-byte big-endian chunk counter || 1-byte last-chunk flag
//
// Every chunk but the last is full; the last (flag 1) may be shorter, full
// or, for an empty stream, empty. Reordered, dropped or repeated chunks
// fail their tag (wrong counter), a cut at a chunk boundary leaves a last
// chunk sealed without the flag, and bytes appended after the last chunk
// make it a non-last one: every case fails as [ErrCorrupt]. The data key is
// fresh for each backup, so nonces never repeat under one key.
//
// The plaintext is a sequence of rows, each a table name and typed values
// (NULL, int64, string or []byte, each tagged so bytes and text never mix),
// closed by an end marker that carries the row count.
//
// # Restore is all or nothing
//
// [Read] does not buffer the file: it decrypts chunk by chunk and hands rows
// to the [Importer], which inserts them in one transaction and commits only
// after the row function has returned io.EOF. Read returns io.EOF only after
// the last chunk has been authenticated and nothing follows it, so a
// tampered, truncated or extended file rolls the whole restore back and
// nothing is imported. A wrong root key is found before the first row.
//
// # Compatibility
//
// The magic's last byte and the header's format field are the format
// version; Read refuses any version it does not know. The header's schema
// version must not be newer than the destination store's (restore with a
// Coffer at least as new as the one that wrote the backup); an older one
// restores into a store that is an OlderSchemaImporter, as *store.DB is,
// the columns added since taking their defaults.
package backup
