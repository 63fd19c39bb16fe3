package sandbox

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"time"
	_ "time/tzdata" // Europe/Paris must load on distroless images without zoneinfo.
)

// ingridParis is the zone of GRTgaz gas days.
var ingridParis = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic("sandbox: Europe/Paris: " + err.Error())
	}
	return loc
}()

// ingridEpoch is when the fake's history starts: the first gas day of gas year 2023/24.
// Notices are numbered and reference data revised from it.
var ingridEpoch = time.Date(2023, 10, 1, 6, 0, 0, 0, ingridParis)

// ingridDateLayout is the layout of startDate/endDate and gasDay values.
const ingridDateLayout = "2006-01-02"

// ingridGasDayStart returns when the gas day of the calendar date (y, m, d) starts:
// 06:00 Europe/Paris. time.Date normalises m and d, so d+1 is the next day.
func ingridGasDayStart(y int, m time.Month, d int) time.Time {
	return time.Date(y, m, d, 6, 0, 0, 0, ingridParis)
}

// ingridGasDayOf returns the start of the gas day holding t.
func ingridGasDayOf(t time.Time) time.Time {
	p := t.In(ingridParis)
	if p.Hour() < 6 {
		p = p.AddDate(0, 0, -1)
	}
	return ingridGasDayStart(p.Year(), p.Month(), p.Day())
}

// ingridNextGasDay returns the start of the gas day after the one starting at gd.
func ingridNextGasDay(gd time.Time) time.Time {
	p := gd.In(ingridParis)
	return ingridGasDayStart(p.Year(), p.Month(), p.Day()+1)
}

// ingridParisAt returns the instant at hh:mm Paris time, days calendar days after the
// date of gas day gd.
func ingridParisAt(gd time.Time, days, hh, mm int) time.Time {
	p := gd.In(ingridParis)
	return time.Date(p.Year(), p.Month(), p.Day()+days, hh, mm, 0, 0, ingridParis)
}

// ingridDate formats the calendar date of gas day gd.
func ingridDate(gd time.Time) string { return gd.In(ingridParis).Format(ingridDateLayout) }

// ingridTime formats an instant the way the fake writes times: RFC 3339 in UTC.
func ingridTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ingridHash derives a deterministic 64-bit value from the seed and parts.
func ingridHash(seed int64, parts ...any) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(seed))
	_, _ = h.Write(b[:])
	for _, p := range parts {
		_, _ = fmt.Fprintf(h, "\x00%v", p)
	}
	// splitmix64 finaliser: FNV alone mixes the last bytes poorly.
	z := h.Sum64() + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// ingridUnit maps a hash to [0, 1).
func ingridUnit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// ingridPick picks one of choices from a hash.
func ingridPick(h uint64, choices []string) string { return choices[h%uint64(len(choices))] }

var (
	ingridPoints = []string{
		"PIR Dunkerque", "PIR Obergailbach", "PIR Oltingue", "PIR Virtualys", "PIR Pirineos",
		"PITTM Montoir", "PITTM Fos", "PITTM Dunkerque LNG", "PITS Atlantique", "PITS Nord-Est",
	}
	ingridDirections = []string{"entry", "exit"}
	ingridProducts   = []string{"yearly", "quarterly", "monthly", "daily"}
	ingridWorks      = []string{"pipeline inspection", "compressor maintenance", "metering station works", "valve replacement"}
	ingridServices   = []string{"entry capacity", "exit capacity", "JTS", "UIOLI", "interruptible capacity", "balancing"}
	ingridOperators  = []string{"GRDF", "Régaz-Bordeaux", "R-GDS", "Teréga"}
)

// ingridKind says how a dataset's records are keyed and evolve.
type ingridKind int

const (
	ingridNotice    ingridKind = iota // documents created, updated, withdrawn; key noticeId
	ingridDaily                       // one record per gas day; key gasDay
	ingridHourly                      // one record per hour; key hourStart (UTC)
	ingridReference                   // a few long-lived items; key the dataset's id field
)

// ingridStage is one publication of a series value: the first stage publishes it, each later
// one revises it (new version, new status, usually a new value).
type ingridStage struct {
	status string
	// at returns when the stage is reached for gas day gd (and hour h for hourly records).
	at func(gd, h time.Time) time.Time
}

// ingridQuantity is one kWh field of a series or notice with its typical size.
type ingridQuantity struct {
	field string
	scale float64 // typical magnitude in kWh (per day, or per hour for hourly data)
}

// ingridDataset describes how the fake generates one dataset.
type ingridDataset struct {
	name string
	kind ingridKind

	// Series (daily, hourly).
	stages     []ingridStage
	quantities []ingridQuantity
	derive     func(q map[string]int64) // computes derived quantities in place
	static     func(seed int64, contract string) map[string]any

	// Notices.
	prefix   string        // notice id prefix
	interval time.Duration // mean time between two new notices
	maxLife  time.Duration // every update or withdrawal happens within maxLife of creation

	// Reference data.
	idField string // name of the id field
	count   int    // items per contract
}

var (
	// Stages shared by the series.
	ingridDailyActuals = []ingridStage{
		{"provisional", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, 1, 7, 0) }},
		{"validated", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, 1, 13, 0) }},
		{"final", ingridMonthlyFinal},
	}
	ingridDailyBalancing = []ingridStage{
		{"provisional", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, 1, 7, 0) }},
		{"validated", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, 1, 13, 0) }},
	}
	ingridForecastStages = []ingridStage{
		{"monthly-forecast", func(gd, _ time.Time) time.Time {
			p := gd.In(ingridParis)
			return time.Date(p.Year(), p.Month()-1, 25, 12, 0, 0, 0, ingridParis)
		}},
		{"day-ahead", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, -1, 14, 30) }},
	}
	ingridHourlyActuals = []ingridStage{
		{"provisional", func(_, h time.Time) time.Time { return h.Add(90 * time.Minute) }},
		{"validated", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, 1, 13, 0) }},
		{"final", ingridMonthlyFinal},
	}
	ingridIntraday = []ingridStage{
		{"provisional", func(_, h time.Time) time.Time { return h.Add(75 * time.Minute) }},
		{"validated", func(gd, _ time.Time) time.Time { return ingridParisAt(gd, 1, 7, 0) }},
	}
)

// ingridMonthlyFinal is when monthly finals of gas day gd's month come out: the 5th of the
// next month at 12:00 Paris.
func ingridMonthlyFinal(gd, _ time.Time) time.Time {
	p := gd.In(ingridParis)
	return time.Date(p.Year(), p.Month()+1, 5, 12, 0, 0, 0, ingridParis)
}

func ingridPointStatic(seed int64, contract string) map[string]any {
	return map[string]any{"pointCode": ingridPick(ingridHash(seed, contract, "point"), ingridPoints)}
}

// ingridCatalogue is every dataset of the connection guide, in the guide's order.
var ingridCatalogue = []*ingridDataset{
	// Portfolio of services and capacities.
	{name: "upstream-allocated-capacities", kind: ingridReference, idField: "capacityId", prefix: "UAC", count: 4},
	{name: "standardized-capacity-subscriptions", kind: ingridReference, idField: "subscriptionId", prefix: "SCS", count: 5},
	{name: "downstream-allocated-capacities", kind: ingridReference, idField: "capacityId", prefix: "DAC", count: 3},
	{name: "services", kind: ingridReference, idField: "serviceId", prefix: "SRV", count: 4},
	// Notices.
	{name: "confirmation-notice", kind: ingridNotice, prefix: "CN", interval: 6 * time.Hour, maxLife: 24 * time.Hour},
	{name: "operational-notices", kind: ingridNotice, prefix: "ON", interval: 4 * time.Hour, maxLife: 48 * time.Hour},
	{name: "consolidated-maintenance-programs", kind: ingridNotice, prefix: "MP", interval: 12 * time.Hour, maxLife: 5 * 24 * time.Hour},
	// Measures.
	{name: "supply-links", kind: ingridReference, idField: "supplyLinkId", prefix: "SL", count: 3},
	{name: "pce-connection-links", kind: ingridReference, idField: "pceCode", prefix: "PCE", count: 6},
	{name: "daily-measures", kind: ingridDaily, stages: ingridDailyActuals, static: ingridPointStatic,
		quantities: []ingridQuantity{{"measuredQuantity", 2e7}}},
	{name: "hourly-measures", kind: ingridHourly, stages: ingridHourlyActuals, static: ingridPointStatic,
		quantities: []ingridQuantity{{"measuredQuantity", 8e5}}},
	// Allocations.
	{name: "daily-allocations", kind: ingridDaily, stages: ingridDailyActuals,
		quantities: []ingridQuantity{{"allocatedEntryQuantity", 2e7}, {"allocatedExitQuantity", 2e7}}},
	{name: "hourly-allocations", kind: ingridHourly, stages: ingridHourlyActuals,
		quantities: []ingridQuantity{{"allocatedEntryQuantity", 8e5}, {"allocatedExitQuantity", 8e5}}},
	{name: "daily-imbalances", kind: ingridDaily, stages: ingridDailyActuals,
		quantities: []ingridQuantity{{"injectedQuantity", 2e7}, {"withdrawnQuantity", 2e7}},
		derive:     func(q map[string]int64) { q["imbalanceQuantity"] = q["injectedQuantity"] - q["withdrawnQuantity"] }},
	{name: "daily-exceeding", kind: ingridDaily, stages: ingridDailyActuals, static: ingridPointStatic,
		quantities: []ingridQuantity{{"subscribedCapacity", 2e7}, {"allocatedQuantity", 2e7}},
		derive: func(q map[string]int64) {
			q["exceedingQuantity"] = max(0, q["allocatedQuantity"]-q["subscribedCapacity"])
		}},
	{name: "hourly-exceeding", kind: ingridHourly, stages: ingridHourlyActuals, static: ingridPointStatic,
		quantities: []ingridQuantity{{"hourlyCapacity", 8e5}, {"allocatedQuantity", 8e5}},
		derive:     func(q map[string]int64) { q["exceedingQuantity"] = max(0, q["allocatedQuantity"]-q["hourlyCapacity"]) }},
	// Balancing.
	{name: "common-indicators", kind: ingridDaily, stages: ingridDailyBalancing,
		static:     func(int64, string) map[string]any { return map[string]any{"balancingZone": "TRF"} },
		quantities: []ingridQuantity{{"zoneImbalance", 5e7}, {"linepack", 3e9}, {"consumption", 1.5e9}}},
	{name: "daily-contractual-forecasts", kind: ingridDaily, stages: ingridForecastStages,
		quantities: []ingridQuantity{{"forecastQuantity", 2e7}}},
	{name: "intraday-distributed-quantities", kind: ingridHourly, stages: ingridIntraday,
		quantities: []ingridQuantity{{"distributedQuantity", 6e5}}},
}

// maxSpan bounds the period of one request (400 beyond it): 8 days of hourly data, 62 of
// daily data, a year of anything else.
func (d *ingridDataset) maxSpan() time.Duration {
	switch d.kind {
	case ingridHourly:
		return 8 * 24 * time.Hour
	case ingridDaily:
		return 62 * 24 * time.Hour
	default:
		return 366 * 24 * time.Hour
	}
}

// INGRIDDatasets returns the names of the 19 datasets the fake serves, one path each.
func INGRIDDatasets() []string {
	names := make([]string, len(ingridCatalogue))
	for i, d := range ingridCatalogue {
		names[i] = d.name
	}
	return names
}

// ingridRecord is one record as written on the wire: a flat JSON object.
type ingridRecord = map[string]any

// series returns the records of a daily or hourly dataset whose gas day (daily) or hour start
// (hourly) lies in [from, to) and that are published at now, ordered by time.
func (d *ingridDataset) series(seed int64, contract string, from, to, now time.Time) []ingridRecord {
	var out []ingridRecord
	for gd := ingridGasDayOf(from); gd.Before(to); gd = ingridNextGasDay(gd) {
		if d.kind == ingridDaily {
			if gd.Before(from) {
				continue
			}
			if r := d.seriesRecord(seed, contract, gd, time.Time{}, now); r != nil {
				out = append(out, r)
			}
			continue
		}
		// Hours are counted in UTC, so a gas day has 23, 24 or 25 of them.
		for h := gd; h.Before(ingridNextGasDay(gd)); h = h.Add(time.Hour) {
			if h.Before(from) || !h.Before(to) {
				continue
			}
			if r := d.seriesRecord(seed, contract, gd, h, now); r != nil {
				out = append(out, r)
			}
		}
	}
	return out
}

// seriesRecord builds one series record as known at now, or nil before it is published.
func (d *ingridDataset) seriesRecord(seed int64, contract string, gd, h, now time.Time) ingridRecord {
	version, updated := 0, time.Time{}
	for _, st := range d.stages {
		at := st.at(gd, h)
		if at.After(now) {
			break
		}
		version, updated = version+1, at
	}
	if version == 0 {
		return nil
	}
	key := ingridDate(gd)
	if d.kind == ingridHourly {
		key = ingridTime(h)
	}
	r := ingridRecord{
		"contractCode": contract,
		"gasDay":       ingridDate(gd),
		"status":       d.stages[version-1].status,
		"version":      version,
		"updatedAt":    ingridTime(updated),
		"unit":         "kWh",
	}
	if d.kind == ingridHourly {
		r["hourStart"] = key
	}
	if d.static != nil {
		for k, v := range d.static(seed, contract) {
			r[k] = v
		}
	}
	q := make(map[string]int64, len(d.quantities)+1)
	for _, f := range d.quantities {
		base := 0.5 + ingridUnit(ingridHash(seed, contract, d.name, key, f.field))
		// Each revision moves the value by up to ±4 %.
		for v := 2; v <= version; v++ {
			base *= 1 + 0.08*(ingridUnit(ingridHash(seed, contract, d.name, key, f.field, v))-0.5)
		}
		q[f.field] = int64(math.Round(base * f.scale))
	}
	if d.derive != nil {
		d.derive(q)
	}
	for k, v := range q {
		r[k] = v
	}
	return r
}

// ingridNoticeEvents is the life of one notice: created, updated, maybe withdrawn.
type ingridNoticeEvents struct {
	created   time.Time
	updates   []time.Time // ascending, all before withdrawn
	withdrawn time.Time   // zero when never withdrawn
}

func (d *ingridDataset) noticeLife(seed int64, contract string, n int64) ingridNoticeEvents {
	h := func(parts ...any) uint64 { return ingridHash(seed, append([]any{contract, d.name, n}, parts...)...) }
	var ev ingridNoticeEvents
	ev.created = ingridEpoch.Add(time.Duration(n)*d.interval + time.Duration(ingridUnit(h("created"))*float64(d.interval)))
	if ingridUnit(h("withdrawn")) < 0.3 {
		ev.withdrawn = ev.created.Add(d.maxLife/4 + time.Duration(ingridUnit(h("withdrawn-at"))*float64(d.maxLife*3/4))).Truncate(time.Minute)
	}
	updates := int(h("updates") % 4)
	for i := range updates {
		at := ev.created.Add(time.Duration(ingridUnit(h("update", i)) * float64(d.maxLife))).Truncate(time.Minute)
		if !at.After(ev.created) || (!ev.withdrawn.IsZero() && !at.Before(ev.withdrawn)) {
			continue
		}
		ev.updates = append(ev.updates, at)
	}
	sort.Slice(ev.updates, func(i, j int) bool { return ev.updates[i].Before(ev.updates[j]) })
	ev.created = ev.created.Truncate(time.Minute)
	return ev
}

// notices returns the notices whose last change known at now lies in [from, to), ordered by
// that time then id.
func (d *ingridDataset) notices(seed int64, contract string, from, to, now time.Time) []ingridRecord {
	var out []ingridRecord
	first := int64(from.Sub(ingridEpoch)-d.maxLife)/int64(d.interval) - 1
	last := int64(to.Sub(ingridEpoch)) / int64(d.interval)
	for n := max(first, 0); n <= last; n++ {
		r := d.notice(seed, contract, n, now)
		if r == nil {
			continue
		}
		upd, _ := time.Parse(time.RFC3339, r["updatedAt"].(string))
		if upd.Before(from) || !upd.Before(to) {
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i]["updatedAt"] != out[j]["updatedAt"] {
			return out[i]["updatedAt"].(string) < out[j]["updatedAt"].(string)
		}
		return out[i]["noticeId"].(string) < out[j]["noticeId"].(string)
	})
	return out
}

// notice builds notice n as known at now, or nil before it is created.
func (d *ingridDataset) notice(seed int64, contract string, n int64, now time.Time) ingridRecord {
	ev := d.noticeLife(seed, contract, n)
	if ev.created.After(now) {
		return nil
	}
	version, updated, status := 1, ev.created, "published"
	for _, u := range ev.updates {
		if u.After(now) {
			break
		}
		version, updated, status = version+1, u, "updated"
	}
	if !ev.withdrawn.IsZero() && !ev.withdrawn.After(now) {
		version, updated, status = version+1, ev.withdrawn, "withdrawn"
	}
	h := func(parts ...any) uint64 { return ingridHash(seed, append([]any{contract, d.name, n}, parts...)...) }
	periodStart := ingridGasDayOf(ev.created.Add(time.Duration(1+h("start")%10) * 24 * time.Hour))
	days := 1 + int(h("days", version)%5)
	r := ingridRecord{
		"noticeId":     fmt.Sprintf("%s-%s-%06d", d.prefix, contract, n),
		"contractCode": contract,
		"version":      version,
		"status":       status,
		"publishedAt":  ingridTime(ev.created),
		"updatedAt":    ingridTime(updated),
		"pointCode":    ingridPick(h("point"), ingridPoints),
		"periodStart":  ingridDate(periodStart),
		"periodEnd":    ingridDate(periodStart.AddDate(0, 0, days-1)),
		"unit":         "kWh/d",
	}
	q := int64(1e6 + ingridUnit(h("quantity", version))*4e7)
	switch d.name {
	case "confirmation-notice":
		r["gasDay"] = ingridDate(ingridGasDayOf(ev.created.Add(24 * time.Hour)))
		r["confirmedQuantity"] = q
		r["unit"] = "kWh"
		delete(r, "periodStart")
		delete(r, "periodEnd")
	case "operational-notices":
		r["direction"] = ingridPick(h("direction"), ingridDirections)
		r["availableCapacity"] = q
	default:
		r["workType"] = ingridPick(h("work"), ingridWorks)
		r["capacityReduction"] = q
	}
	return r
}

// references returns the reference items of the dataset as known at now, ordered by id.
// Every item is valid from the epoch with no end, so any period returns all of them.
func (d *ingridDataset) references(seed int64, contract string, now time.Time) []ingridRecord {
	if now.Before(ingridEpoch) {
		return nil
	}
	out := make([]ingridRecord, 0, d.count)
	for i := range d.count {
		h := func(parts ...any) uint64 { return ingridHash(seed, append([]any{contract, d.name, i}, parts...)...) }
		// Item i is revised every 2+2i days (item 0 every other day), from a phase of its own.
		period := time.Duration(2+2*i) * 24 * time.Hour
		phase := time.Duration(ingridUnit(h("phase")) * float64(period))
		version, updated := 1, ingridEpoch
		if first := ingridEpoch.Add(phase); !now.Before(first) {
			k := int(now.Sub(first) / period)
			version, updated = k+2, first.Add(time.Duration(k)*period).Truncate(time.Minute)
		}
		id := fmt.Sprintf("%s-%s-%03d", d.prefix, contract, i+1)
		q := int64(1e6 + ingridUnit(h("quantity", version))*5e7)
		r := ingridRecord{
			d.idField:      id,
			"contractCode": contract,
			"version":      version,
			"updatedAt":    ingridTime(updated),
			"validFrom":    ingridDate(ingridEpoch),
			"validTo":      nil,
		}
		switch d.name {
		case "services":
			r["serviceType"] = ingridPick(h("type"), ingridServices)
			r["pointCode"] = ingridPick(h("point"), ingridPoints)
			r["subscribedQuantity"], r["unit"] = q, "kWh/d"
		case "supply-links":
			r["pointCode"] = ingridPick(h("point"), ingridPoints)
			r["counterpartyCode"] = fmt.Sprintf("SHP%04d", h("counterparty")%10000)
			r["maxDailyQuantity"], r["unit"] = q, "kWh/d"
		case "pce-connection-links":
			r[d.idField] = fmt.Sprintf("GI%04d%02d", h("pce")%10000, i+1)
			r["distributionOperator"] = ingridPick(h("dso"), ingridOperators)
			r["estimatedAnnualConsumption"], r["unit"] = q*100, "kWh"
		default: // capacities
			dir := "entry"
			if d.name == "downstream-allocated-capacities" {
				dir = "exit"
			}
			r["direction"] = dir
			r["pointCode"] = ingridPick(h("point"), ingridPoints)
			r["product"] = ingridPick(h("product"), ingridProducts)
			r["capacity"], r["unit"] = q, "kWh/d"
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][d.idField].(string) < out[j][d.idField].(string) })
	return out
}
