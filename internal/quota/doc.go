// Package quota owns per-principal usage quotas: how many units of a kind
// (values tokenized, values tokenized in a linkable mode) one principal may
// use within a sliding period, counted in the store so that every node of
// a cluster charges the same totals.
//
// A [Meter] charges a request's use before the work is done and refunds it
// when the work is not done. A charge that would carry a principal's use
// over the period past its limit is refused with a 429 [coffer.Error]
// whose RetryAfterSeconds says when enough of the earlier use will have
// left the period; a request larger than the whole limit is refused with a
// 413. Limits come from [Config]: one per kind for every principal, which a
// role may replace (a principal with several roles gets the largest).
//
// # Counting
//
// Use is counted in sixtieths of the period (a minute of an hour) through
// [Store.AddCounts]: the charge is added to the current slice, and the
// total returned covers the slices from one period before it. A charge is
// accepted only when that total, which holds every charge made before it on
// any node, is within the limit; a refused charge is given back at once.
// So the accepted use over any period never exceeds the limit, and a
// charge refused because of a concurrent charge that is later given back
// is the only error, in the safe direction.
//
// # What it must never do
//
// It must never let a charge through when the store cannot count it (it
// fails closed, 503), never put a value in a counter key (keys name the
// kind and the principal id), and never charge a principal for another's
// use.
package quota
