package store

import (
	"strconv"
	"testing"
)

// A column added by a migration goes at the end of its table's list, after
// the columns of every earlier migration: a backup of an older schema
// holds its rows in the order tablesAt gives for that version.
func TestBackupColumnsAddedAtTheEnd(t *testing.T) {
	for _, tb := range backupTables() {
		var last int64
		for _, c := range tb.cols {
			if c.since < last {
				t.Errorf("%s.%s (added in %d) follows a column added in %d", tb.name, c.name, c.since, last)
			}
			last = c.since
		}
	}
	// A table added by a later migration (every column added with it) is
	// not in an older version's backups.
	want := 0
	for _, tb := range backupTables() {
		if tb.cols[0].since <= oldestRestorable {
			want++
		} else if tb.cols[len(tb.cols)-1].since != tb.cols[0].since {
			t.Errorf("%s: a table added by migration %d has columns added later", tb.name, tb.cols[0].since)
		}
	}
	if got := len(tablesAt(oldestRestorable)); got != want {
		t.Fatalf("tablesAt(%d) has %d tables, want %d", oldestRestorable, got, want)
	}
}

// TestAuditValueKeyFilterNamesThePrefix: the fixed filter leaves out
// exactly the audit value keys' prefix.
func TestAuditValueKeyFilterNamesThePrefix(t *testing.T) {
	want := "substr(key_id, 1, " + strconv.Itoa(len("audit-value/")) + ") <> 'audit-value/'"
	if auditValueKeyFilter != want {
		t.Fatalf("auditValueKeyFilter = %s, want %s", auditValueKeyFilter, want)
	}
}
