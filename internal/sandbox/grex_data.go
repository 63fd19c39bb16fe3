package sandbox

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"
)

// Bundle statuses (EnergyTag shape).
const (
	GREXStatusActive      = "Active"
	GREXStatusTransferred = "Transferred"
	GREXStatusCancelled   = "Cancelled"
	GREXStatusExpired     = "Expired"
	GREXStatusWithdrawn   = "Withdrawn"
	GREXStatusLocked      = "Locked"
)

// grexBundle is a certificate bundle as the registry answers it.
type grexBundle struct {
	BundleID              string `json:"BundleId"`
	AccountNumber         string `json:"AccountNumber"`
	CertificateIDStart    int64  `json:"CertificateIdStart"`
	CertificateIDEnd      int64  `json:"CertificateIdEnd"`
	Volume                int64  `json:"Volume"`
	EnergySourceCode      string `json:"EnergySourceCode"`
	TechnologyCode        string `json:"TechnologyCode"`
	ProductionPeriodStart string `json:"ProductionPeriodStart"`
	ProductionPeriodEnd   string `json:"ProductionPeriodEnd"`
	DeviceID              string `json:"DeviceId"`
	Status                string `json:"Status"`
	IssuedAt              string `json:"IssuedAt"`
	ModifiedAt            string `json:"ModifiedAt"`

	modified time.Time
}

// grexTransaction is one registry transaction on an account.
type grexTransaction struct {
	TransactionID             string `json:"TransactionId"`
	AccountNumber             string `json:"AccountNumber"`
	TransactionType           string `json:"TransactionType"`
	BundleID                  string `json:"BundleId"`
	CertificateIDStart        int64  `json:"CertificateIdStart"`
	CertificateIDEnd          int64  `json:"CertificateIdEnd"`
	Volume                    int64  `json:"Volume"`
	CounterpartyAccountNumber string `json:"CounterpartyAccountNumber,omitempty"`
	TransactionDate           string `json:"TransactionDate"`
	ModifiedAt                string `json:"ModifiedAt"`

	modified time.Time
}

// grexAccountSummary is the account read.
type grexAccountSummary struct {
	AccountNumber string `json:"AccountNumber"`
	AccountName   string `json:"AccountName"`
	AccountType   string `json:"AccountType"`
	Status        string `json:"Status"`
	ActiveVolume  int64  `json:"ActiveVolume"`
	LockedVolume  int64  `json:"LockedVolume"`
	BundleCount   int    `json:"BundleCount"`
	ModifiedAt    string `json:"ModifiedAt"`
}

// grexDevice is a production device with its EECS codes (illustrative pairs).
type grexDevice struct{ id, source, tech string }

var grexSources = []struct{ source, tech string }{
	{"F01010100", "T010100"}, // solar, photovoltaic
	{"F01030100", "T020100"}, // wind, onshore
	{"F01050100", "T030100"}, // hydro, run of river
	{"F01050200", "T030200"}, // hydro, storage
}

// grexAccount is one account's data and its deterministic evolution.
type grexAccount struct {
	number  string
	seed    uint64
	start   time.Time
	every   time.Duration
	devices []grexDevice

	bundles  []*grexBundle
	txs      []*grexTransaction
	nextCert int64
	tick     int64 // last applied tick
	modified time.Time
}

func grexHash(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

func grexTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// newGREXAccount builds an account with n bundles issued over the half year before start.
func newGREXAccount(number string, index int, seed uint64, start time.Time, n int, every time.Duration) *grexAccount {
	a := &grexAccount{
		number: number, seed: seed ^ grexHash(number), start: start, every: every,
		nextCert: int64(index+1) * 1_000_000_000_000, modified: start.Add(-183 * 24 * time.Hour),
	}
	rng := rand.New(rand.NewPCG(a.seed, 1))
	for i := range 3 + rng.IntN(3) {
		s := grexSources[rng.IntN(len(grexSources))]
		a.devices = append(a.devices, grexDevice{id: fmt.Sprintf("%s-D%03d", number, i+1), source: s.source, tech: s.tech})
	}

	// History: issuances in batches that share one timestamp, some followed by a change.
	type event struct {
		at     time.Time
		seq    int
		bundle int // index in creation order
		issue  bool
		kind   string
	}
	var events []event
	span := int64(183 * 24 * time.Hour / time.Second)
	for made := 0; made < n; {
		at := start.Add(-time.Duration(1+rng.Int64N(span)) * time.Second)
		for range min(1+rng.IntN(4), n-made) {
			events = append(events, event{at: at, seq: len(events), bundle: made, issue: true})
			if rng.IntN(10) < 3 {
				gap := start.Sub(at)
				later := at.Add(time.Duration(1+rng.Int64N(int64(gap/time.Second))) * time.Second)
				if later.After(start) {
					later = start
				}
				events = append(events, event{at: later, seq: len(events), bundle: made, kind: grexPickKind(rng)})
			}
			made++
		}
	}
	slices.SortFunc(events, func(x, y event) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	})
	created := map[int]*grexBundle{}
	for _, e := range events {
		if e.issue {
			created[e.bundle] = a.issue(rng, e.at)
			continue
		}
		if b := created[e.bundle]; b != nil {
			a.change(b, e.kind, e.at)
		}
	}
	return a
}

// grexPickKind picks a lifecycle change for an existing bundle.
func grexPickKind(rng *rand.Rand) string {
	switch r := rng.IntN(20); {
	case r < 8:
		return "Transfer"
	case r < 14:
		return "Cancellation"
	case r < 17:
		return "Expiry"
	case r < 18:
		return "Withdrawal"
	default:
		return "Lock"
	}
}

// issue creates a bundle for a production month before at.
func (a *grexAccount) issue(rng *rand.Rand, at time.Time) *grexBundle {
	d := a.devices[rng.IntN(len(a.devices))]
	month := time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC).AddDate(0, -1-rng.IntN(3), 0)
	vol := 1 + rng.Int64N(5000)
	b := &grexBundle{
		BundleID:              fmt.Sprintf("%s-B%07d", a.number, len(a.bundles)+1),
		AccountNumber:         a.number,
		CertificateIDStart:    a.nextCert,
		CertificateIDEnd:      a.nextCert + vol - 1,
		Volume:                vol,
		EnergySourceCode:      d.source,
		TechnologyCode:        d.tech,
		ProductionPeriodStart: grexTime(month),
		ProductionPeriodEnd:   grexTime(month.AddDate(0, 1, 0)),
		DeviceID:              d.id,
		Status:                GREXStatusActive,
		IssuedAt:              grexTime(at),
	}
	a.nextCert += vol
	a.bundles = append(a.bundles, b)
	a.touch(b, at)
	a.record(b, "Issuance", "", at)
	return b
}

// change applies a lifecycle change of kind to b at time at.
func (a *grexAccount) change(b *grexBundle, kind string, at time.Time) {
	counterparty := ""
	switch kind {
	case "Transfer":
		b.Status = GREXStatusTransferred
		counterparty = fmt.Sprintf("FR%04d", 9000+grexHash(b.BundleID)%1000)
	case "Cancellation":
		b.Status = GREXStatusCancelled
	case "Expiry":
		b.Status = GREXStatusExpired
	case "Withdrawal":
		b.Status = GREXStatusWithdrawn
	case "Lock":
		b.Status = GREXStatusLocked
	case "Unlock":
		b.Status = GREXStatusActive
	}
	a.touch(b, at)
	a.record(b, kind, counterparty, at)
}

func (a *grexAccount) touch(b *grexBundle, at time.Time) {
	b.modified = at
	b.ModifiedAt = grexTime(at)
	if at.After(a.modified) {
		a.modified = at
	}
}

func (a *grexAccount) record(b *grexBundle, kind, counterparty string, at time.Time) {
	a.txs = append(a.txs, &grexTransaction{
		TransactionID:             fmt.Sprintf("%s-T%08d", a.number, len(a.txs)+1),
		AccountNumber:             a.number,
		TransactionType:           kind,
		BundleID:                  b.BundleID,
		CertificateIDStart:        b.CertificateIDStart,
		CertificateIDEnd:          b.CertificateIDEnd,
		Volume:                    b.Volume,
		CounterpartyAccountNumber: counterparty,
		TransactionDate:           grexTime(at),
		ModifiedAt:                grexTime(at),
		modified:                  at,
	})
}

// advance applies every event due up to now. Tick k happens at start + k·every, and what it
// does depends only on the seed, the account and k (and the state the earlier ticks left).
func (a *grexAccount) advance(now time.Time) {
	if a.every <= 0 || now.Before(a.start) {
		return
	}
	due := int64(now.Sub(a.start) / a.every)
	for ; a.tick < due; a.tick++ {
		k := a.tick + 1
		at := a.start.Add(time.Duration(k) * a.every)
		a.step(rand.New(rand.NewPCG(a.seed, uint64(k)+2)), at)
	}
}

// step is one simulated event.
func (a *grexAccount) step(rng *rand.Rand, at time.Time) {
	byStatus := func(s string) []*grexBundle {
		var out []*grexBundle
		for _, b := range a.bundles {
			if b.Status == s {
				out = append(out, b)
			}
		}
		return out
	}
	r := rng.IntN(100)
	active := byStatus(GREXStatusActive)
	if r < 35 || len(active) == 0 {
		for range 1 + rng.IntN(3) {
			a.issue(rng, at)
		}
		return
	}
	if r < 40 {
		if locked := byStatus(GREXStatusLocked); len(locked) > 0 {
			a.change(locked[rng.IntN(len(locked))], "Unlock", at)
			return
		}
	}
	a.change(active[rng.IntN(len(active))], grexPickKind(rng), at)
}

// grexWindow selects items modified in [from, to) (zero to: unbounded), sorted by
// (ModifiedAt, id), then skips and takes.
func grexWindow[T any](items []T, modified func(T) time.Time, id func(T) string, from, to time.Time, skip, top int) []T {
	var sel []T
	for _, it := range items {
		m := modified(it)
		if m.Before(from) || (!to.IsZero() && !m.Before(to)) {
			continue
		}
		sel = append(sel, it)
	}
	slices.SortFunc(sel, func(x, y T) int {
		if c := modified(x).Compare(modified(y)); c != 0 {
			return c
		}
		return cmp.Compare(id(x), id(y))
	})
	if skip >= len(sel) {
		return []T{}
	}
	sel = sel[skip:]
	if len(sel) > top {
		sel = sel[:top]
	}
	return sel
}
