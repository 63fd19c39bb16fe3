package ingrid

import (
	"net/url"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

// SourceName is the source token in subjects and event types.
const SourceName = "ingrid"

const (
	day = 24 * time.Hour

	// forecastHorizon is how far past the window daily-contractual-forecasts are read: the
	// monthly forecast for next month is out by the 25th.
	forecastHorizon = 40 * day
)

// Request shapes. The query parameters are assumptions (no public INGRID reference exists);
// they live here and nowhere else.

// contractOf is the contract code a job asks for: Params["contractCode"] when set (a raw code
// the subject token cannot carry), else the partition id.
func contractOf(p pollers.Partition) string {
	if c := p.Params["contractCode"]; c != "" {
		return c
	}
	return p.ID
}

// byGasDays asks for whole gas days: from the gas day holding w.From to the one holding the
// last instant before w.To, both included, plus extra days past the end.
func byGasDays(name string, extra time.Duration) func(pollers.Partition, pollers.Window) (string, url.Values) {
	return func(p pollers.Partition, w pollers.Window) (string, url.Values) {
		last := w.To.Add(-time.Nanosecond)
		if !w.To.After(w.From) {
			last = w.From
		}
		end := GasDayOf(last).Add(extra)
		return "/" + name, url.Values{
			"contractCode": {contractOf(p)},
			"startDate":    {FormatGasDay(w.From)},
			"endDate":      {FormatGasDay(end)},
		}
	}
}

// byHours asks for hour starts in [start of the gas day holding w.From, w.To rounded up to
// the hour), as RFC 3339 date-times in UTC: a re-read always covers whole gas days.
func byHours(name string) func(pollers.Partition, pollers.Window) (string, url.Values) {
	return func(p pollers.Partition, w pollers.Window) (string, url.Values) {
		from := GasDayOf(w.From).UTC()
		to := w.To.UTC().Truncate(time.Hour)
		if to.Before(w.To) {
			to = to.Add(time.Hour)
		}
		if !to.After(from) {
			to = from.Add(time.Hour)
		}
		return "/" + name, url.Values{
			"contractCode": {contractOf(p)},
			"startDate":    {from.Format(time.RFC3339)},
			"endDate":      {to.Format(time.RFC3339)},
		}
	}
}

// notices declares a notice dataset: documents keyed by noticeId, filtered upstream on the
// gas day of their last change, so a short look-back sees every new version.
func notices(name string, cadence, lookBack, backfill time.Duration) *pollers.Dataset {
	return &pollers.Dataset{
		Source: SourceName, Name: name,
		Cadence: cadence, LookBack: lookBack, Backfill: backfill, MaxSpan: 31 * day,
		Request: byGasDays(name, 0),
		Decode:  DecodeNotices,
	}
}

// daily declares a gas-day series: provisional, validated on D+1, final after the month.
func daily(name string, cadence, lookBack time.Duration) *pollers.Dataset {
	return &pollers.Dataset{
		Source: SourceName, Name: name,
		Cadence: cadence, LookBack: lookBack, Backfill: lookBack, MaxSpan: 45 * day,
		Request: byGasDays(name, 0),
		Decode:  DecodeDaily,
	}
}

// hourly declares an hourly series keyed by hour start (UTC). Each poll re-reads the short
// look-back (intraday and D+1 revisions); every hourlyDeepEvery the last hourlyDeepLookBack
// is read again for the monthly finals, which come out after the month (by the 5th).
func hourly(name string, cadence, lookBack time.Duration) *pollers.Dataset {
	return &pollers.Dataset{
		Source: SourceName, Name: name,
		Cadence: cadence, LookBack: lookBack, MaxSpan: 4 * day,
		DeepLookBack: hourlyDeepLookBack, DeepEvery: hourlyDeepEvery, Backfill: hourlyDeepLookBack,
		Request: byHours(name),
		Decode:  DecodeHourly,
	}
}

// The deep re-read of hourly series: 40 days reach back over the previous month until
// its finals are out (the 5th), read twice a day (10 requests of 4 days each).
const (
	hourlyDeepLookBack = 40 * day
	hourlyDeepEvery    = 12 * time.Hour
)

// reference declares rarely changing reference data: every poll reads the items valid over
// the last day and only differences are published.
func reference(name, idField string, cadence time.Duration) *pollers.Dataset {
	return &pollers.Dataset{
		Source: SourceName, Name: name,
		Cadence: cadence, LookBack: day, Backfill: day,
		Request: byGasDays(name, 0),
		Decode:  DecodeReference(idField),
	}
}

// The 19 datasets of the INGRID connection guide, grouped as the guide groups them.
// hourly-allocations is listed under both allocations and balancing there: it is one dataset.
var (
	// Portfolio of services and capacities (the portfolio for D is known by 14:30 on D-1).
	UpstreamAllocatedCapacities       = reference("upstream-allocated-capacities", "capacityId", 2*time.Hour)
	StandardizedCapacitySubscriptions = reference("standardized-capacity-subscriptions", "subscriptionId", 2*time.Hour)
	DownstreamAllocatedCapacities     = reference("downstream-allocated-capacities", "capacityId", 2*time.Hour)
	Services                          = reference("services", "serviceId", 6*time.Hour)

	// Notices.
	ConfirmationNotice              = notices("confirmation-notice", 5*time.Minute, day, 3*day)
	OperationalNotices              = notices("operational-notices", 5*time.Minute, day, 7*day)
	ConsolidatedMaintenancePrograms = notices("consolidated-maintenance-programs", time.Hour, 3*day, 60*day)

	// Measures.
	SupplyLinks        = reference("supply-links", "supplyLinkId", 6*time.Hour)
	PCEConnectionLinks = reference("pce-connection-links", "pceCode", 6*time.Hour)
	DailyMeasures      = daily("daily-measures", 15*time.Minute, 40*day)
	HourlyMeasures     = hourly("hourly-measures", 5*time.Minute, 3*day)

	// Allocations (D is communicated on D+1 before 13:00, then corrected to the monthly final).
	DailyAllocations  = daily("daily-allocations", 15*time.Minute, 40*day)
	HourlyAllocations = hourly("hourly-allocations", 5*time.Minute, 3*day)
	DailyImbalances   = daily("daily-imbalances", 15*time.Minute, 40*day)
	DailyExceeding    = daily("daily-exceeding", 15*time.Minute, 40*day)
	HourlyExceeding   = hourly("hourly-exceeding", 5*time.Minute, 3*day)

	// Balancing (single French zone TRF).
	CommonIndicators          = daily("common-indicators", 15*time.Minute, 7*day)
	DailyContractualForecasts = func() *pollers.Dataset {
		d := daily("daily-contractual-forecasts", 15*time.Minute, 2*day)
		d.MaxSpan = 7 * day
		d.Request = byGasDays(d.Name, forecastHorizon)
		return d
	}()
	IntradayDistributedQuantities = hourly("intraday-distributed-quantities", 5*time.Minute, 3*day)
)

// Datasets lists every INGRID dataset, in the guide's order.
var Datasets = []*pollers.Dataset{
	UpstreamAllocatedCapacities, StandardizedCapacitySubscriptions, DownstreamAllocatedCapacities, Services,
	ConfirmationNotice,
	OperationalNotices,
	ConsolidatedMaintenancePrograms,
	SupplyLinks, PCEConnectionLinks, DailyMeasures, HourlyMeasures,
	DailyAllocations, HourlyAllocations, DailyImbalances, DailyExceeding, HourlyExceeding,
	CommonIndicators, DailyContractualForecasts, IntradayDistributedQuantities,
}

// Lookup returns the dataset named name, or nil.
func Lookup(name string) *pollers.Dataset {
	for _, d := range Datasets {
		if d.Name == name {
			return d
		}
	}
	return nil
}
