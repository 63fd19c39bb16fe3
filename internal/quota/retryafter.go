package quota

import (
	"math"
	"net/http"
	"strings"
	"time"
)

// maxRetryAfter bounds what ParseRetryAfter returns, so a hostile header cannot
// overflow a time.Duration; callers apply their own, much smaller cap.
const maxRetryAfter = time.Duration(math.MaxInt64)

// ParseRetryAfter reads an HTTP Retry-After value (RFC 9110 §10.2.3): either
// delta-seconds ("120") or an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT", and the
// obsolete RFC 850 and asctime forms). It returns how long to wait from now, never
// negative (a date in the past means "now"), and false when v is neither form.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if isDigits(v) {
		var secs uint64
		for i := 0; i < len(v); i++ {
			d := uint64(v[i] - '0')
			if secs > (math.MaxUint64-d)/10 {
				return maxRetryAfter, true
			}
			secs = secs*10 + d
		}
		if secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now) // saturates instead of overflowing
	if d < 0 {
		d = 0
	}
	return d, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
