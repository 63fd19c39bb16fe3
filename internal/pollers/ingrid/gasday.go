package ingrid

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // Europe/Paris must load on distroless images without zoneinfo.
)

// Paris is the zone gas days are defined in.
var Paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic("ingrid: load Europe/Paris: " + err.Error())
	}
	return loc
}()

// GasDayLayout is how INGRID writes a gas day and a date parameter.
const GasDayLayout = "2006-01-02"

// gasDayHour is when a gas day starts, Paris time.
const gasDayHour = 6

// GasDayStart returns the instant gas day (y, m, d) starts: 06:00 Europe/Paris. Out-of-range
// days normalise as in time.Date, so d+1 is the next gas day.
func GasDayStart(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, gasDayHour, 0, 0, 0, Paris)
}

// GasDayOf returns the start of the gas day that holds t.
func GasDayOf(t time.Time) time.Time {
	p := t.In(Paris)
	if p.Hour() < gasDayHour {
		p = p.AddDate(0, 0, -1)
	}
	return GasDayStart(p.Year(), p.Month(), p.Day())
}

// NextGasDay returns the start of the gas day after the one holding t.
func NextGasDay(t time.Time) time.Time {
	p := GasDayOf(t).In(Paris)
	return GasDayStart(p.Year(), p.Month(), p.Day()+1)
}

// GasDayHours returns how many hours the gas day holding t lasts: 23 on the night clocks go
// forward, 25 on the night they go back, 24 otherwise.
func GasDayHours(t time.Time) int {
	return int(NextGasDay(t).Sub(GasDayOf(t)) / time.Hour)
}

// FormatGasDay returns the calendar date (YYYY-MM-DD) of the gas day holding t.
func FormatGasDay(t time.Time) string { return GasDayOf(t).In(Paris).Format(GasDayLayout) }

// ParseGasDay returns the start of the gas day written as YYYY-MM-DD.
func ParseGasDay(s string) (time.Time, error) {
	d, err := time.ParseInLocation(GasDayLayout, s, Paris)
	if err != nil {
		return time.Time{}, fmt.Errorf("gas day %q: want YYYY-MM-DD", truncate(s))
	}
	return GasDayStart(d.Year(), d.Month(), d.Day()), nil
}

// truncate shortens upstream text quoted in an error.
func truncate(s string) string {
	const limit = 40
	if len(s) > limit {
		return strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}
