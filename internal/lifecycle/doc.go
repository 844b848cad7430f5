// Package lifecycle runs Coffer's background data jobs: the retention purge
// (records past their collection's retention are deleted in batches, with
// their index entries) and the rewrap job (every sealed value is moved to the
// newest version of its data key, in batches, resumable after a crash from a
// saved cursor). A job runs on one node at a time under a lease in the
// store, so any number of nodes can run the scheduler.
//
// Jobs open and reseal values only in memory; they must never log a value,
// and a rewrap never overwrites a record changed since it was read.
package lifecycle
