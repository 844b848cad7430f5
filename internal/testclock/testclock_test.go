package testclock

import (
	"testing"
	"time"
)

func TestAdvance(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	c := New(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now = %v, want %v", c.Now(), t0)
	}
	c.Advance(90 * time.Second)
	if got := c.Now(); !got.Equal(t0.Add(90 * time.Second)) {
		t.Fatalf("after Advance: %v", got)
	}
}

func TestOffset(t *testing.T) {
	var c Offset
	if d := time.Since(c.Now()); d < 0 || d > time.Minute {
		t.Fatalf("zero Offset is %v from the real time", d)
	}
	c.Advance(time.Hour)
	if d := time.Until(c.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("after Advance(1h) the clock is %v ahead", d)
	}
}
