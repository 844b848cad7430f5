// Package harden prepares the serving process: Harden keeps its secrets to
// itself (no core dumps, not dumpable, memory locked where the limits
// allow) and TuneRuntime sets the garbage collector's target.
//
// Every step is best effort and logged; it must never stop the process
// from serving, and never change a setting the operator set (GOGC).
package harden
