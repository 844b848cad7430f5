package detect

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// hoursSpec is a daily range of minutes in a time zone; start > end spans
// midnight.
type hoursSpec struct {
	start, end int // minutes since midnight; end may be 1440
	loc        *time.Location
	text       string
}

// parseHours parses "HH:MM-HH:MM" with an optional IANA zone after a space.
func parseHours(s string) (hoursSpec, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return hoursSpec{}, errors.New(`hours must look like "08:00-18:00" or "08:00-18:00 Europe/Berlin"`)
	}
	from, to, ok := strings.Cut(f[0], "-")
	if !ok {
		return hoursSpec{}, errors.New(`hours must be a range "HH:MM-HH:MM"`)
	}
	start, err := parseClock(from, false)
	if err != nil {
		return hoursSpec{}, err
	}
	end, err := parseClock(to, true)
	if err != nil {
		return hoursSpec{}, err
	}
	if start == end {
		return hoursSpec{}, errors.New("hours: empty range")
	}
	h := hoursSpec{start: start, end: end, loc: time.UTC, text: strings.Join(f, " ")}
	if len(f) == 2 {
		loc, err := time.LoadLocation(f[1])
		if err != nil {
			return hoursSpec{}, fmt.Errorf("hours: unknown time zone %q", f[1])
		}
		h.loc = loc
	}
	return h, nil
}

// parseClock parses "HH:MM" into minutes; "24:00" only when allow24.
func parseClock(s string, allow24 bool) (int, error) {
	bad := fmt.Errorf("hours: bad time %q (want HH:MM)", s)
	if len(s) != 5 || s[2] != ':' {
		return 0, bad
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, bad
		}
	}
	hh := int(s[0]-'0')*10 + int(s[1]-'0')
	mm := int(s[3]-'0')*10 + int(s[4]-'0')
	if mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !allow24)) {
		return 0, bad
	}
	return hh*60 + mm, nil
}

// contains reports whether t falls within the hours.
func (h hoursSpec) contains(t time.Time) bool {
	lt := t.In(h.loc)
	m := lt.Hour()*60 + lt.Minute()
	if h.start < h.end {
		return m >= h.start && m < h.end
	}
	return m >= h.start || m < h.end
}

// String returns the hours as configured.
func (h hoursSpec) String() string { return h.text }
