package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/coffer"
)

// rowsPerInsert is how many rows of cols columns one multi-row INSERT
// carries: SQLite resolves $N placeholders in time growing with the square
// of their number, so it gets small statements (256 placeholders); for
// PostgreSQL larger ones save round trips.
func (db *DB) rowsPerInsert(cols int) int {
	if db.dialect == SQLite {
		return max(1, importParamsSQLite/cols)
	}
	return max(1, importParamsPostgres/cols)
}

// PutTokens stores token rows in one transaction; a row whose MAC exists
// already (a deterministic token seen before) is left as it is.
func (db *DB) PutTokens(ctx context.Context, ts []coffer.StoredToken) error {
	if len(ts) == 0 {
		return nil
	}
	return db.inTx(ctx, func(q querier) error {
		per := db.rowsPerInsert(8)
		for start := 0; start < len(ts); start += per {
			chunk := ts[start:min(start+per, len(ts))]
			var sb strings.Builder
			sb.WriteString(`INSERT INTO tokens (mac, type, mode, version, sealed, canary, expires_at, created_at) VALUES `)
			args := make([]any, 0, len(chunk)*8)
			for i, t := range chunk {
				if i > 0 {
					sb.WriteByte(',')
				}
				// Only placeholders are written into the statement.
				sb.WriteByte('(')
				for j := 1; j <= 8; j++ {
					if j > 1 {
						sb.WriteByte(',')
					}
					sb.WriteByte('$')
					sb.WriteString(strconv.Itoa(i*8 + j))
				}
				sb.WriteByte(')')
				args = append(args, t.MAC, t.Type, t.Mode, int64(t.Version), nonNilBytes(t.Sealed), b2i(t.Canary),
					nullTime(t.ExpiresAt), micros(t.CreatedAt))
			}
			sb.WriteString(` ON CONFLICT (mac) DO NOTHING`)
			if _, err := q.exec(ctx, sb.String(), args...); err != nil {
				return fmt.Errorf("store: put tokens: %w", err)
			}
		}
		return nil
	})
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// Tokens returns the rows of the given MACs, keyed by string(mac); MACs
// with no row are absent from the map.
func (db *DB) Tokens(ctx context.Context, macs [][]byte) (map[string]coffer.StoredToken, error) {
	out := make(map[string]coffer.StoredToken, len(macs))
	per := db.rowsPerInsert(1)
	for start := 0; start < len(macs); start += per {
		chunk := macs[start:min(start+per, len(macs))]
		var sb strings.Builder
		sb.WriteString(`SELECT mac, type, mode, version, sealed, canary, expires_at, created_at FROM tokens WHERE mac IN (`)
		args := make([]any, len(chunk))
		for i, m := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteByte('$')
			sb.WriteString(strconv.Itoa(i + 1))
			args[i] = m
		}
		sb.WriteByte(')')
		rs, err := db.read.query(ctx, sb.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("store: tokens: %w", err)
		}
		for rs.Next() {
			var (
				t            coffer.StoredToken
				ver, can, cr int64
				exp          sql.NullInt64
			)
			if err := rs.Scan(&t.MAC, &t.Type, &t.Mode, &ver, &t.Sealed, &can, &exp, &cr); err != nil {
				rs.Close()
				return nil, fmt.Errorf("store: tokens: %w", err)
			}
			t.Version, t.Canary, t.CreatedAt = uint32(ver), can != 0, fromMicros(cr) // #nosec G115 -- stored from uint32
			if exp.Valid {
				e := fromMicros(exp.Int64)
				t.ExpiresAt = &e
			}
			out[string(t.MAC)] = t
		}
		err = rs.Err()
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("store: tokens: %w", err)
		}
	}
	return out, nil
}
