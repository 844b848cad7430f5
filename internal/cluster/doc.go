// Package cluster owns a node's membership of a deployment: its node id
// (configured, or generated once and kept in the data directory), the
// lease on that id in the store that a running node renews with its
// heartbeat, and the check that this node's schema version may run against
// the database's.
//
// # Guarantees
//
// Two live nodes never hold one node id: Join refuses to start a node
// while another process renews the lease on its id, with a message that
// says what to do. A data directory copied to another place (another
// host, another path) gets a new id the first time it is served there,
// so copying a data directory to add a node needs no configuration.
//
// # Must never
//
// This package must never take over a lease another process still renews,
// and never lets a node whose lease was lost report itself healthy.
package cluster
