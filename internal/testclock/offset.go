package testclock

import (
	"sync/atomic"
	"time"
)

// Offset is the real time plus an offset a test moves forward: time still
// passes, so timeouts and tickers behave, and a test can jump past an
// expiry or a window. The zero value reads the real time; safe for
// concurrent use.
type Offset struct{ offset atomic.Int64 }

// Now returns the real time plus the offset.
func (c *Offset) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// Advance moves the clock by d. Tests move it forward only, so audit
// times stay ordered.
func (c *Offset) Advance(d time.Duration) { c.offset.Add(int64(d)) }
