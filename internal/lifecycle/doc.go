// Package lifecycle runs Coffer's background data jobs: the retention purge
// (records past their collection's retention are deleted in batches, with
// their index entries) and the rewrap job (every sealed value is moved to the
// newest version of its data key, in batches, resumable after a crash from a
// saved cursor), and the automatic rotation of data keys ([Jobs.AutoRotate]:
// a key whose current version is older than its policy allows, or has
// sealed more values than it allows, is rotated as an operator would, and
// the rewrap follows), and the reindex (Config.Reindex, vault.Reindex: blind
// index entries move to their field's newest index key version after a
// rotation). A job runs on one node at a time under a lease in the store,
// so any number of nodes can run the scheduler.
//
// # Once, across nodes
//
// A job's lease (store.AcquireLease) names its holder and carries a
// fencing token that grows each time the lease changes hands. Every write
// a job makes checks, in its own transaction, that the lease is still held
// under that token (the rewrap's value swaps and cursor, the purge's
// deletions), and the automatic rotation renews the lease, token
// unchanged, before each key it rotates: a node paused past its lease
// while another took the job over has its writes refused
// (coffer.ErrLeaseLost) and stops. Within one process a mutex per job keeps
// the scheduler and a run started after a rotation from overlapping. A
// node that dies holding a job keeps the others out until its lease runs
// out (Config.LeaseTTL); the next node to try then takes it, and the
// rewrap resumes from the cursor saved after each batch, so nothing is
// redone and nothing skipped.
//
// # Automatic rotation
//
// AES-GCM with random 96-bit nonces allows a key about 2^32 encryptions;
// the keyring counts every seal per key version and the job rotates well
// before (keys.rotate_after_uses, default 2^30), and after an age
// (keys.rotate_after, default 90 days). [Rules] says which keys rotate by
// which rule: collection and token value keys by both, subject keys by use
// count only (an age rule would rewrap every subject's records on a
// schedule for nothing), the audit log's keys by age only (they seal no
// value; the log goes on under the new version, and every old one is kept
// for verification), and never the keys whose MACs find rows. Rotations
// are logged by key id and versions only.
//
// The rewrap after a rotation reseals every value of the key under the
// new version, and those seals count (the keyring counts them apart too,
// coffer.DataKey.RewrapUses). A key holding more values than half the use
// bound is over it again, or nearly, as soon as its rewrap has run, and
// rotating it again would only reseal the same values: [RotationPolicy.Due]
// makes such a version due by uses only once more new values than
// rewrapped ones were sealed under it, and [Jobs.AutoRotate] warns of it
// at every check ([RotationPolicy.TooManyValues]) with its key id and
// counts: only splitting the collection or a higher bound helps.
//
// Jobs open and reseal values only in memory; they must never log a value,
// and a rewrap never overwrites a record changed since it was read.
package lifecycle
