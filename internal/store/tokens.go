package store

import (
	"context"
	"database/sql"
	"errors"
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

// tokenCols is how many columns PutTokens writes per row.
const tokenCols = 9

// PutTokens stores token rows, all or nothing, in one transaction. The
// rows' MACs must be distinct. A row whose MAC exists already (a
// deterministic or format-preserving token of a value made before) is
// merged into the stored one rather than replaced, so that every holder of
// the token keeps what it was promised:
//
//   - the token expires at the later of the two expiries, and never when
//     either has none (a TTL on a linkable token is a lower bound);
//   - a stored canary stays a canary (a value that matches a decoy is
//     exactly what the decoy is there to catch); a new canary over a
//     stored token that is not one is a conflict: planting it would
//     silently not happen;
//   - a stored row of another type, mode, key version or format-preserving
//     options (a token that means something else) is a conflict.
//
// A stored row that has expired is replaced by the new one. When any row
// conflicts nothing is written, and PutTokens returns the conflicting
// MACs (and a nil error).
func (db *DB) PutTokens(ctx context.Context, ts []coffer.StoredToken) (conflicts [][]byte, err error) {
	if len(ts) == 0 {
		return nil, nil
	}
	err = db.inTx(ctx, func(q querier) error {
		per := db.rowsPerInsert(tokenCols)
		for start := 0; start < len(ts); start += per {
			chunk := ts[start:min(start+per, len(ts))]
			var sb strings.Builder
			sb.WriteString(`INSERT INTO tokens (mac, type, mode, version, sealed, canary, expires_at, created_at, fpe_options) VALUES `)
			args := make([]any, 0, len(chunk)*tokenCols)
			for i, t := range chunk {
				if i > 0 {
					sb.WriteByte(',')
				}
				// Only placeholders are written into the statement.
				sb.WriteByte('(')
				for j := 1; j <= tokenCols; j++ {
					if j > 1 {
						sb.WriteByte(',')
					}
					sb.WriteByte('$')
					sb.WriteString(strconv.Itoa(i*tokenCols + j))
				}
				sb.WriteByte(')')
				args = append(args, t.MAC, t.Type, t.Mode, int64(t.Version), nonNilBytes(t.Sealed), b2i(t.Canary),
					nullTime(t.ExpiresAt), micros(t.CreatedAt), int64(t.FPEOptions))
			}
			// excluded.created_at is the new row's time: "now".
			sb.WriteString(` ON CONFLICT (mac) DO UPDATE SET
				sealed = CASE WHEN ` + tokenExpired + ` THEN excluded.sealed ELSE tokens.sealed END,
				canary = CASE WHEN ` + tokenExpired + ` THEN excluded.canary ELSE tokens.canary END,
				created_at = CASE WHEN ` + tokenExpired + ` THEN excluded.created_at ELSE tokens.created_at END,
				expires_at = CASE
					WHEN ` + tokenExpired + ` THEN excluded.expires_at
					WHEN tokens.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL
					WHEN excluded.expires_at > tokens.expires_at THEN excluded.expires_at
					ELSE tokens.expires_at END
				WHERE tokens.type = excluded.type AND tokens.mode = excluded.mode
					AND tokens.version = excluded.version AND tokens.fpe_options = excluded.fpe_options
					AND (` + tokenExpired + ` OR tokens.canary <> 0 OR excluded.canary = 0)
				RETURNING mac`)
			rs, err := q.query(ctx, sb.String(), args...)
			if err != nil {
				return fmt.Errorf("store: put tokens: %w", err)
			}
			written := make(map[string]bool, len(chunk))
			for rs.Next() {
				var mac []byte
				if err := rs.Scan(&mac); err != nil {
					rs.Close()
					return fmt.Errorf("store: put tokens: %w", err)
				}
				written[string(mac)] = true
			}
			err = rs.Err()
			rs.Close()
			if err != nil {
				return fmt.Errorf("store: put tokens: %w", err)
			}
			for _, t := range chunk {
				if !written[string(t.MAC)] {
					conflicts = append(conflicts, t.MAC)
				}
			}
		}
		if len(conflicts) > 0 {
			return errTokenConflicts
		}
		return nil
	})
	if errors.Is(err, errTokenConflicts) {
		return conflicts, nil
	}
	return nil, err
}

// tokenExpired is true in PutTokens' upsert when the stored row has
// expired by the new row's time.
const tokenExpired = `(tokens.expires_at IS NOT NULL AND tokens.expires_at <= excluded.created_at)`

// errTokenConflicts rolls back a PutTokens that found conflicts.
var errTokenConflicts = errors.New("store: put tokens: conflicting rows")

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
		sb.WriteString(`SELECT mac, type, mode, version, sealed, canary, expires_at, created_at, fpe_options FROM tokens WHERE mac IN (`)
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
				t                 coffer.StoredToken
				ver, can, cr, opt int64
				exp               sql.NullInt64
			)
			if err := rs.Scan(&t.MAC, &t.Type, &t.Mode, &ver, &t.Sealed, &can, &exp, &cr, &opt); err != nil {
				rs.Close()
				return nil, fmt.Errorf("store: tokens: %w", err)
			}
			t.Version, t.Canary, t.CreatedAt = uint32(ver), can != 0, fromMicros(cr) // #nosec G115 -- stored from uint32
			t.FPEOptions = uint8(opt)                                                // #nosec G115 -- stored from uint8
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
