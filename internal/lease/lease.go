// Package lease shares jobs between replicas through a JetStream key-value bucket.
//
// Jobs are grouped (Grouping): every NET2GRID job falls into one of a fixed number of
// hash buckets, and each quota-bound source (INGRID, G-REX) is a single group, so it has
// one active replica. A replica holds a group through one lease key, so the KV traffic
// depends on the number of groups, not of jobs.
//
// Each replica heartbeats a membership key. Rendezvous (HRW) hashing of a group over the
// live members names its preferred owner. A replica claims a group it prefers when the
// group is free (Create) or its lease has expired (Update on the stale revision), renews
// what it holds (Update on its own last revision), and hands back a group it no longer
// prefers (Delete on its last revision) once the polls in flight for it have finished.
//
// Expiry is judged without trusting clocks across machines: an observer counts a lease
// as expired when its revision has not changed for TTL on the observer's own clock since
// the observer saw that revision, while the holder stops starting polls after
// holdFraction of TTL from the moment it sent its last renewal. The holder's window
// therefore always ends before anyone else's takeover window begins.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
)

// Key prefixes in the lease bucket.
const (
	memberPrefix = "member."
	groupPrefix  = "group."
)

// holdFraction is the part of TTL, counted from the send time of the last successful
// claim or renewal, during which the holder may start and run polls. The rest is a
// margin for clock-rate drift and tick granularity before an observer may take over.
const holdFraction = 0.8

// Options configure a Manager.
type Options struct {
	// Replica names this replica (host name in production). Two processes must not
	// share a name; if they do, the compare-and-swap still keeps a group with one of them.
	Replica string
	// TTL is how long a silent replica keeps its leases (default 30s). Renewals run every
	// TTL/3.
	TTL time.Duration
	// Grouping maps jobs to lease groups.
	Grouping Grouping
	Log      *slog.Logger
	// OnGain, if set, is told the jobs of a group this replica just gained (so the
	// scheduler polls them now rather than after their cadence).
	OnGain func(jobIDs ...string)
	// OnWatch, if set, is told when the watch on the bucket holds (nil) and when it is
	// lost (the error): while it is lost, leases are renewed but changes go unseen.
	OnWatch func(err error)
}

// Grouping maps a job id ("<source>.<dataset>.<partition>", escaped tokens) to the lease
// group that carries it.
type Grouping struct {
	// Buckets is the number of hash groups per source that is split across replicas
	// (default 64). More buckets spread finer but cost more renewals.
	Buckets int
	// Whole lists the sources that are one group each (one active replica): the
	// quota-bound INGRID and G-REX.
	Whole []string
}

// Group returns the lease group of a job: the source itself for a Whole source, else
// "<source>.<bucket>" where bucket hashes the partition, so that every dataset of one
// partition (one end user, one token) lives on the same replica.
func (g Grouping) Group(jobID string) string {
	source, rest, _ := strings.Cut(jobID, ".")
	if slices.Contains(g.Whole, source) {
		return source
	}
	_, partition, _ := strings.Cut(rest, ".")
	n := g.Buckets
	if n <= 0 {
		n = 64
	}
	h := fnv.New64a()
	h.Write([]byte(partition))
	return source + "." + strconv.FormatUint(mix(h.Sum64())%uint64(n), 10)
}

// record is the value of a lease or membership key. Expires is informational (the
// holder's wall clock); expiry is judged by revisions, see the package doc.
type record struct {
	Owner    string    `json:"owner"`
	Instance string    `json:"instance"`
	Expires  time.Time `json:"expires"`
}

// held is a group this replica holds.
type held struct {
	rev        uint64
	renewedAt  time.Time // send time of the last successful claim or renewal
	validUntil time.Time // renewedAt + holdFraction*TTL
	draining   bool      // handing back: no new polls
	inflight   int
	ctx        context.Context // ends when the lease is lost or given up
	cancel     context.CancelFunc
}

// observed is the latest value of another key as seen through the watch.
type observed struct {
	rec     record
	rev     uint64
	at      time.Time // local time this revision (or the absence of the key) was first seen
	deleted bool
}

// Manager holds this replica's leases. Run drives it; Acquire and Owns answer the
// scheduler.
type Manager struct {
	kv       jetstream.KeyValue
	o        Options
	ttl      time.Duration
	instance string
	log      *slog.Logger
	kick     chan struct{}

	mu      sync.Mutex
	jobs    map[string][]string // group -> job ids
	groupOf map[string]string   // job id -> group
	held    map[string]*held    // group -> lease held
	view    map[string]*observed
	beat    time.Time // last heartbeat sent
	closed  bool
}

// ErrNoReplica is returned by New without a replica name.
var ErrNoReplica = errors.New("lease: replica name is empty")

// New returns a Manager on the lease bucket kv.
func New(kv jetstream.KeyValue, o Options) (*Manager, error) {
	if o.Replica == "" {
		return nil, ErrNoReplica
	}
	if o.TTL <= 0 {
		o.TTL = 30 * time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &Manager{
		kv: kv, o: o, ttl: o.TTL, instance: hex.EncodeToString(b),
		log:  log.With("replica", o.Replica),
		kick: make(chan struct{}, 1),
		jobs: map[string][]string{}, groupOf: map[string]string{},
		held: map[string]*held{}, view: map[string]*observed{},
	}, nil
}

// SetJobs sets the jobs this replica knows; only their groups are claimed.
func (m *Manager) SetJobs(jobIDs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobs = map[string][]string{}
	m.groupOf = make(map[string]string, len(jobIDs))
	for _, id := range jobIDs {
		g := m.o.Grouping.Group(id)
		m.jobs[g] = append(m.jobs[g], id)
		m.groupOf[id] = g
	}
	m.signal()
}

// Owns says whether this replica may start a poll of jobID now: it holds the job's
// group, is not handing it back, and the lease has enough validity left.
func (m *Manager) Owns(jobID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usable(m.held[m.groupOf[jobID]], time.Now())
}

func (m *Manager) usable(h *held, now time.Time) bool {
	// Refuse to start a poll in the last quarter of the holding window: renewals run
	// every TTL/3, so a healthy lease never gets there.
	return h != nil && !m.closed && !h.draining && h.validUntil.Sub(now) > m.ttl/4
}

// Holds says whether this replica holds jobID's group and keeps it, even if it may not
// start a poll this instant (a renewal is late): the scheduler then asks again soon
// rather than after the job's cadence.
func (m *Manager) Holds(jobID string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.held[m.groupOf[jobID]]
	return h != nil && !m.closed && !h.draining
}

// Acquire is the scheduler's hook: when this replica may poll jobID, it returns a
// context that ends if the lease is lost, and done, to be called when the poll has
// finished; a group is never handed back while one of its polls runs.
func (m *Manager) Acquire(ctx context.Context, jobID string) (context.Context, func(), bool) {
	m.mu.Lock()
	h := m.held[m.groupOf[jobID]]
	if !m.usable(h, time.Now()) {
		m.mu.Unlock()
		return ctx, func() {}, false
	}
	h.inflight++
	m.mu.Unlock()
	pctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(h.ctx, cancel)
	var once sync.Once
	return pctx, func() {
		once.Do(func() {
			stop()
			cancel()
			m.mu.Lock()
			h.inflight--
			m.mu.Unlock()
			m.signal()
		})
	}, true
}

// Held returns the groups this replica holds, sorted (status, tests).
func (m *Manager) Held() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.held))
	for g := range m.held {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

func (m *Manager) signal() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Run heartbeats, watches the bucket, claims, renews and hands back leases until ctx
// ends; then it releases every lease it holds and its membership. Cancel it only after
// the scheduler has returned, so that the polls in flight finish under their leases.
// NATS may be away when Run starts or later: the watch is opened again until it holds,
// and nothing is claimed before the bucket's current state has been read once.
func (m *Manager) Run(ctx context.Context) {
	synced := make(chan struct{})
	go m.watch(ctx, synced)
	select {
	case <-synced:
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(max(m.ttl/10, 20*time.Millisecond))
	defer tick.Stop()
	for {
		m.step(ctx)
		select {
		case <-ctx.Done():
			m.release(ctx)
			return
		case <-tick.C:
		case <-m.kick:
		}
	}
}

// watch keeps a watch on the bucket for as long as ctx lasts, opening it again when it
// fails or ends, and closes synced the first time the current state has been read.
func (m *Manager) watch(ctx context.Context, synced chan struct{}) {
	var once sync.Once
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval, bo.MaxElapsedTime = 100*time.Millisecond, m.ttl, 0
	for {
		err := m.watchOnce(ctx, func() {
			bo.Reset()
			once.Do(func() { close(synced) })
			m.setWatch(nil)
		})
		if ctx.Err() != nil {
			return
		}
		m.setWatch(err)
		d := bo.NextBackOff()
		m.log.Warn("lease: bucket watch lost, opening it again", "err", err, "in", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return
		}
	}
}

// watchOnce runs one watch until it fails. After its initial values it forgets the keys
// they did not include (deleted while no watch ran), and calls onSync.
func (m *Manager) watchOnce(ctx context.Context, onSync func()) error {
	w, err := m.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket: %w", err)
	}
	defer func() { _ = w.Stop() }()
	initial := map[string]bool{}
	timeout := time.NewTimer(2 * m.ttl)
	defer timeout.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watch ended")
			}
			switch {
			case e == nil:
				if initial != nil {
					m.forgetAllBut(initial)
					initial = nil
					timeout.Stop()
					onSync()
				}
			default:
				if initial != nil {
					initial[e.Key()] = true
				}
				m.observe(e)
			}
		case <-timeout.C:
			return errors.New("initial state of the bucket did not arrive")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// forgetAllBut marks the keys of the view that are not in present as deleted now: a new
// watch's initial values do not say which keys went away while none ran.
func (m *Manager) forgetAllBut(present map[string]bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, o := range m.view {
		if !present[k] && !o.deleted {
			m.view[k] = &observed{rev: o.rev, at: time.Now(), deleted: true}
		}
	}
	m.signal()
}

func (m *Manager) setWatch(err error) {
	if m.o.OnWatch != nil {
		m.o.OnWatch(err)
	}
}

// observe records a key's new revision as seen now.
func (m *Manager) observe(e jetstream.KeyValueEntry) {
	o := &observed{rev: e.Revision(), at: time.Now()}
	if e.Operation() != jetstream.KeyValuePut {
		o.deleted = true
	} else if err := json.Unmarshal(e.Value(), &o.rec); err != nil {
		m.log.Warn("lease: unreadable key", "key", e.Key(), "err", err)
		o.deleted = true
	}
	m.mu.Lock()
	if prev, ok := m.view[e.Key()]; !ok || prev.rev < o.rev {
		m.view[e.Key()] = o
	}
	m.mu.Unlock()
	if o.deleted {
		m.signal() // a freed group may be ours to claim
	}
}

func (m *Manager) value(now time.Time) []byte {
	b, _ := json.Marshal(record{Owner: m.o.Replica, Instance: m.instance, Expires: now.Add(m.ttl).UTC()})
	return b
}

func (m *Manager) memberKey() string { return memberPrefix + keyToken(m.o.Replica) }

// action is one KV operation a step decided on.
type action struct {
	kind  int
	group string
	rev   uint64
}

const (
	actClaimFree = iota
	actClaimStale
	actRenew
	actHandBack
	actForget // a member key that expired long ago
)

// step runs one round: heartbeat, then claim, renew or hand back each group.
func (m *Manager) step(ctx context.Context) {
	now := time.Now()
	if now.Sub(m.beat) >= m.ttl/3 {
		if _, err := m.kv.Put(ctx, m.memberKey(), m.value(now)); err != nil {
			m.log.Warn("lease: heartbeat failed", "err", err)
		} else {
			m.beat = now
		}
	}
	acts, lost := m.plan(now)
	for _, h := range lost {
		h.cancel()
	}
	var gained []string
	for _, a := range acts {
		if ctx.Err() != nil {
			return
		}
		if g, ok := m.apply(ctx, a); ok {
			gained = append(gained, g)
		}
	}
	if m.o.OnGain != nil {
		for _, g := range gained {
			m.mu.Lock()
			ids := slices.Clone(m.jobs[g])
			m.mu.Unlock()
			m.o.OnGain(ids...)
		}
	}
}

// plan decides the round's operations from the local view.
func (m *Manager) plan(now time.Time) (acts []action, lost []*held) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := []string{m.o.Replica}
	for k, o := range m.view {
		if !strings.HasPrefix(k, memberPrefix) || o.deleted || o.rec.Owner == m.o.Replica {
			continue
		}
		switch age := now.Sub(o.at); {
		case age < m.ttl:
			live = append(live, o.rec.Owner)
		case age > 2*m.ttl:
			acts = append(acts, action{kind: actForget, group: k, rev: o.rev})
		}
	}
	groups := make([]string, 0, len(m.jobs))
	for g := range m.jobs {
		groups = append(groups, g)
	}
	slices.Sort(groups)
	for g, h := range m.held {
		if _, ok := m.jobs[g]; !ok { // no job of ours left in it
			h.draining = true
			if h.inflight == 0 {
				acts = append(acts, action{kind: actHandBack, group: g, rev: h.rev})
			}
		}
	}
	for _, g := range groups {
		prefer := preferred(g, live) == m.o.Replica
		if h := m.held[g]; h != nil {
			switch {
			case now.After(h.validUntil):
				// Renewals failed: stop the polls before others may take the group.
				delete(m.held, g)
				lost = append(lost, h)
				m.log.Warn("lease: expired before it could be renewed", "group", g)
			case !prefer:
				h.draining = true
				if h.inflight == 0 {
					acts = append(acts, action{kind: actHandBack, group: g, rev: h.rev})
				} else if now.Sub(h.renewedAt) >= m.ttl/3 {
					acts = append(acts, action{kind: actRenew, group: g, rev: h.rev})
				}
			default:
				h.draining = false
				if now.Sub(h.renewedAt) >= m.ttl/3 {
					acts = append(acts, action{kind: actRenew, group: g, rev: h.rev})
				}
			}
			continue
		}
		key := groupPrefix + g
		o := m.view[key]
		if o == nil {
			o = &observed{deleted: true, at: now}
			m.view[key] = o
		}
		age := now.Sub(o.at)
		switch {
		case o.deleted:
			// Free: the preferred replica claims it; anyone does if it stays free.
			if prefer || age >= m.ttl {
				acts = append(acts, action{kind: actClaimFree, group: g})
			}
		case o.rec.Instance == m.instance:
			// Ours by record but not held (lost locally): take it back if preferred.
			if prefer {
				acts = append(acts, action{kind: actClaimStale, group: g, rev: o.rev})
			}
		case age >= m.ttl:
			// Its holder fell silent: the preferred replica takes over, anyone after 2 TTL.
			if prefer || age >= 2*m.ttl {
				acts = append(acts, action{kind: actClaimStale, group: g, rev: o.rev})
			}
		}
	}
	return acts, lost
}

// apply runs one operation; ok reports a gained group.
func (m *Manager) apply(ctx context.Context, a action) (string, bool) {
	sent := time.Now()
	key := groupPrefix + a.group
	var rev uint64
	var err error
	switch a.kind {
	case actForget:
		err = m.kv.Delete(ctx, a.group, jetstream.LastRevision(a.rev))
		if err != nil && !conflict(err) {
			m.log.Debug("lease: forget member", "key", a.group, "err", err)
		}
		return "", false
	case actHandBack:
		err = m.kv.Delete(ctx, key, jetstream.LastRevision(a.rev))
		m.mu.Lock()
		if h := m.held[a.group]; h != nil && h.rev == a.rev && h.inflight == 0 {
			delete(m.held, a.group)
			h.cancel()
		}
		m.mu.Unlock()
		if err != nil {
			m.log.Warn("lease: hand back", "group", a.group, "err", err)
		} else {
			m.log.Info("lease: handed back", "group", a.group)
		}
		return "", false
	case actClaimFree:
		rev, err = m.kv.Create(ctx, key, m.value(sent))
	case actClaimStale, actRenew:
		rev, err = m.kv.Update(ctx, key, m.value(sent), a.rev)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if a.kind == actRenew {
		h := m.held[a.group]
		if h == nil || h.rev != a.rev {
			return "", false
		}
		switch {
		case err == nil:
			h.rev, h.renewedAt, h.validUntil = rev, sent, sent.Add(time.Duration(holdFraction*float64(m.ttl)))
		case conflict(err):
			// Someone else's revision: the lease is gone.
			delete(m.held, a.group)
			h.cancel()
			m.log.Warn("lease: lost", "group", a.group, "err", err)
		default:
			m.log.Warn("lease: renewal failed", "group", a.group, "err", err)
		}
		return "", false
	}
	if err != nil {
		if !conflict(err) {
			m.log.Warn("lease: claim failed", "group", a.group, "err", err)
		}
		return "", false
	}
	if m.closed {
		return "", false
	}
	hctx, cancel := context.WithCancel(context.Background())
	m.held[a.group] = &held{rev: rev, renewedAt: sent, validUntil: sent.Add(time.Duration(holdFraction * float64(m.ttl))), ctx: hctx, cancel: cancel}
	m.log.Info("lease: gained", "group", a.group, "jobs", len(m.jobs[a.group]))
	return a.group, true
}

// release gives back every lease whose polls have finished, and the membership.
func (m *Manager) release(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	m.mu.Lock()
	m.closed = true
	type rel struct {
		group string
		rev   uint64
	}
	var rels []rel
	for g, h := range m.held {
		if h.inflight == 0 {
			rels = append(rels, rel{g, h.rev})
		}
		h.cancel()
	}
	m.held = map[string]*held{}
	m.mu.Unlock()
	for _, r := range rels {
		if err := m.kv.Delete(rctx, groupPrefix+r.group, jetstream.LastRevision(r.rev)); err != nil {
			m.log.Warn("lease: release", "group", r.group, "err", err)
		}
	}
	if err := m.kv.Delete(rctx, m.memberKey()); err != nil {
		m.log.Warn("lease: leave", "err", err)
	}
	m.log.Info("lease: released", "groups", len(rels))
}

// conflict reports a lost compare-and-swap: another replica wrote the key first.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound)
}

// preferred is the rendezvous (highest random weight) choice of group among members.
func preferred(group string, members []string) string {
	var best string
	var bestScore uint64
	for _, mem := range members {
		h := fnv.New64a()
		h.Write([]byte(mem))
		h.Write([]byte{0})
		h.Write([]byte(group))
		s := mix(h.Sum64())
		if best == "" || s > bestScore || (s == bestScore && mem < best) {
			best, bestScore = mem, s
		}
	}
	return best
}

// mix is the splitmix64 finalizer: FNV alone spreads similar inputs poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// keyToken makes a replica name a valid key token.
func keyToken(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}
