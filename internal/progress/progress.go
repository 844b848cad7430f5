// Package progress carries a long job's progress callback in a context,
// from a command that shows it (a bar or line on standard error, see
// internal/cli) to the use case that does the work (backup, restore, root
// key rotation). It owns nothing else; a callback receives counts only,
// never a value, and must never be used to carry one.
package progress

import "context"

// Func is told how far a long job has come: done of total units (total 0:
// not known). It must be quick; it is called from the job's own goroutine,
// often.
type Func func(done, total int64)

type key struct{}

// With returns ctx carrying fn.
func With(ctx context.Context, fn Func) context.Context {
	return context.WithValue(ctx, key{}, fn)
}

// Of returns ctx's Func, or one that does nothing.
func Of(ctx context.Context) Func {
	if fn, ok := ctx.Value(key{}).(Func); ok && fn != nil {
		return fn
	}
	return func(int64, int64) {}
}
