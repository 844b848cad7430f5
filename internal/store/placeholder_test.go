package store

import "testing"

func TestRewritePlaceholders(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = $1 AND c = $2`, `SELECT a FROM t WHERE b = ? AND c = ?`},
		{`INSERT INTO t VALUES ($1,$2,$3),($4,$5,$6)`, `INSERT INTO t VALUES (?,?,?),(?,?,?)`},
		{`UPDATE t SET n = n + $3 WHERE k = $1 AND w = $2 AND m = $3`, `UPDATE t SET n = n + ?3 WHERE k = ?1 AND w = ?2 AND m = ?3`},
		{`SELECT $2, $1`, `SELECT ?2, ?1`},
		{`SELECT '$1' || $1`, `SELECT '$1' || ?`},
		{`SELECT $10, $11`, `SELECT ?10, ?11`},
		{`SELECT $1 WHERE x = 'it''s $2' AND y = $2`, `SELECT ? WHERE x = 'it''s $2' AND y = ?`},
	}
	for _, tt := range tests {
		if got := rewritePlaceholders(tt.in); got != tt.want {
			t.Errorf("rewritePlaceholders(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
