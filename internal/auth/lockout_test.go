package auth

import (
	"math"
	"strconv"
	"testing"
	"time"
)

func TestLockoutDelay(t *testing.T) {
	cases := []struct {
		failures int
		want     time.Duration
	}{
		{math.MinInt, 0}, {-1, 0}, {0, 0}, {1, 0}, {4, 0},
		{5, time.Second}, {6, 2 * time.Second}, {7, 4 * time.Second}, {8, 8 * time.Second},
		{14, 512 * time.Second}, {15, 15 * time.Minute}, {40, 15 * time.Minute}, {math.MaxInt, 15 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.failures), func(t *testing.T) {
			if got := LockoutDelay(tc.failures); got != tc.want {
				t.Fatalf("LockoutDelay(%d) = %v, want %v", tc.failures, got, tc.want)
			}
		})
	}
}

func TestLockoutDelayNeverShrinks(t *testing.T) {
	prev := time.Duration(0)
	for n := 0; n <= 200; n++ {
		d := LockoutDelay(n)
		if d < prev || d > LockoutMax {
			t.Fatalf("LockoutDelay(%d) = %v after %v", n, d, prev)
		}
		prev = d
	}
}
