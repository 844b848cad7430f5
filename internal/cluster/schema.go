package cluster

import "fmt"

// CheckSchema decides whether a node built for schema version binary may
// serve a database at schema version database. compatibleFrom is the
// oldest schema version whose nodes the database's schema still serves
// correctly, as recorded by the newest migration that broke older nodes (0
// when none did: every migration since only added what older nodes
// ignore). Rules:
//
//   - database older than binary: refused until `coffer migrate`;
//   - the same: served;
//   - database newer (a rolling upgrade under way, this node not yet
//     upgraded): served only when binary >= compatibleFrom, i.e. every
//     migration since this node's schema only added what older nodes
//     ignore; refused otherwise.
//
// newer reports that the database is ahead: with a nil error the caller
// serves and warns.
func CheckSchema(database, binary, compatibleFrom int64) (newer bool, err error) {
	switch {
	case database < binary:
		return false, fmt.Errorf("the database schema (version %d) is older than this node's (version %d): run `coffer migrate` with this version first", database, binary)
	case database == binary:
		return false, nil
	case binary < compatibleFrom:
		return true, fmt.Errorf("the database schema (version %d) is newer than this node's (version %d) and serves only nodes of schema version %d or later: upgrade this node", database, binary, compatibleFrom)
	}
	return true, nil
}
