package ingrid

import (
	"testing"
	"time"
)

func TestGasDaysOnDSTNightsHave23Or25Hours(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		gasDay string
		hours  int
	}{
		{"ordinary winter day", "2024-01-15", 24},
		{"night clocks go forward (31 March 2024)", "2024-03-30", 23},
		{"first summer day", "2024-03-31", 24},
		{"night clocks go back (27 October 2024)", "2024-10-26", 25},
		{"night clocks go forward (30 March 2025)", "2025-03-29", 23},
		{"night clocks go back (26 October 2025)", "2025-10-25", 25},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start, err := ParseGasDay(tc.gasDay)
			if err != nil {
				t.Fatal(err)
			}
			if got := GasDayHours(start); got != tc.hours {
				t.Errorf("GasDayHours = %d, want %d", got, tc.hours)
			}
			// Every hour of the day belongs to it, the next instant does not.
			n := 0
			for h := start; h.Before(NextGasDay(start)); h = h.Add(time.Hour) {
				if FormatGasDay(h) != tc.gasDay {
					t.Fatalf("hour %v is in gas day %s", h.UTC(), FormatGasDay(h))
				}
				n++
			}
			if n != tc.hours {
				t.Errorf("counted %d hours", n)
			}
			if FormatGasDay(NextGasDay(start)) == tc.gasDay {
				t.Error("next gas day is the same day")
			}
		})
	}
}

func TestGasDayStartsAt0600Paris(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		at   time.Time
		want string
	}{
		{"05:59 CET is the previous gas day", time.Date(2024, 1, 10, 4, 59, 0, 0, time.UTC), "2024-01-09"},
		{"06:00 CET starts the gas day", time.Date(2024, 1, 10, 5, 0, 0, 0, time.UTC), "2024-01-10"},
		{"05:59 CEST is the previous gas day", time.Date(2024, 7, 10, 3, 59, 0, 0, time.UTC), "2024-07-09"},
		{"06:00 CEST starts the gas day", time.Date(2024, 7, 10, 4, 0, 0, 0, time.UTC), "2024-07-10"},
		{"midnight Paris is still the previous gas day", time.Date(2024, 7, 9, 22, 0, 0, 0, time.UTC), "2024-07-09"},
		{"the skipped hour's neighbour", time.Date(2024, 3, 31, 1, 30, 0, 0, time.UTC), "2024-03-30"},
		{"the repeated hour", time.Date(2024, 10, 27, 1, 30, 0, 0, time.UTC), "2024-10-26"},
		{"year boundary", time.Date(2025, 1, 1, 3, 0, 0, 0, time.UTC), "2024-12-31"},
	}
	for _, tc := range cases {
		if got := FormatGasDay(tc.at); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		start := GasDayOf(tc.at)
		if p := start.In(Paris); p.Hour() != 6 || p.Minute() != 0 || start.After(tc.at) || !NextGasDay(tc.at).After(tc.at) {
			t.Errorf("%s: gas day starts %v", tc.name, p)
		}
	}
}

func TestParseGasDayRejectsOtherLayouts(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "2024-3-1", "31/03/2024", "2024-03-31T06:00:00Z", "2024-02-30"} {
		if _, err := ParseGasDay(s); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}
