package testlog

import (
	"strings"
	"sync"
	"testing"
)

// Concurrent writers lose nothing (and the race detector sees no race).
func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "x"); got != 800 {
		t.Fatalf("%d bytes kept of 800", got)
	}
}
