package sandbox

// Control API of a running sandbox process (`connector sandbox --control-port`), for chaos
// runs and manual trials: inject and clear faults, revoke tokens, freeze the data clock, read
// the counters, and approve a G-REX login, all over plain HTTP on a separate listener so that
// nothing of it is reachable through the fake upstreams' own ports.
//
//	GET    /_sandbox/info                       base URLs and the G-REX login settings (JSON)
//	GET    /_sandbox/counters                   {"ingrid":{...},"net2grid":{...},"grex":{...}}
//	PUT    /_sandbox/faults/{upstream}/{endpoint}  body: a Fault as JSON ("*" = every endpoint)
//	DELETE /_sandbox/faults                     clear every fault of every upstream
//	POST   /_sandbox/revoke/{upstream}          invalidate issued access tokens (next call: 401)
//	POST   /_sandbox/clock/freeze               stop the data clock (data stop changing)
//	POST   /_sandbox/clock/resume               follow the wall clock again
//	POST   /_sandbox/grex/approve               body: authorize URL → the redirect URL (text)
//	GET    /_sandbox/tokens                     every access and refresh token still known
//	                                            (secret scans look for them in logs and events)

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// ControlClock is the wall clock until frozen: a chaos run freezes it before its final
// check so the data the fakes serve stop changing while the check compares them.
type ControlClock struct {
	mu     sync.Mutex
	frozen bool
	at     time.Time
}

// Now returns the wall clock, or the frozen time.
func (c *ControlClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.frozen {
		return c.at
	}
	return time.Now()
}

// Freeze stops the clock at the current time (no-op when frozen).
func (c *ControlClock) Freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen {
		c.frozen, c.at = true, time.Now()
	}
}

// Resume makes the clock follow the wall clock again.
func (c *ControlClock) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = false
}

// SandboxInfo is what /_sandbox/info answers: enough to configure a connector.
type SandboxInfo struct {
	INGRIDURL, NET2GRIDURL, GREXURL string
	GREXAuthorizeURL, GREXTokenURL  string
	GREXScope, GREXClientID         string
	GREXRedirectURI                 string
	GREXAccounts                    []string
}

// SeedFaults makes the fault dice of every fake reproducible from seed.
func (s *Servers) SeedFaults(seed uint64) {
	for _, fs := range s.faults() {
		fs.mu.Lock()
		fs.rnd = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		fs.mu.Unlock()
	}
}

func (s *Servers) faults() map[string]*Faults {
	return map[string]*Faults{"ingrid": s.INGRID.Faults, "net2grid": s.NET2GRID.Faults, "grex": s.GREX.Faults}
}

// ChaosFaults is the fault profile of `connector sandbox --faults chaos`: every upstream
// fails a share of its requests, each endpoint in its own way (5xx, timeouts, truncated
// bodies, HTML pages, 429 with Retry-After).
func ChaosFaults() map[string]map[string]Fault {
	return map[string]map[string]Fault{
		"ingrid": {
			INGRIDTokenEndpoint:    {Rate: 0.2, Status: http.StatusServiceUnavailable, RetryAfter: "1"},
			"*":                    {Rate: 0.15, Status: http.StatusBadGateway},
			"operational-notices":  {Rate: 0.2, HTML: true},
			"daily-allocations":    {Rate: 0.2, Truncate: true},
			"hourly-measures":      {Rate: 0.1, Timeout: true},
			"confirmation-notice":  {Rate: 0.3, Status: http.StatusTooManyRequests, RetryAfter: "1"},
			"services":             {Rate: 0.2, Status: http.StatusInternalServerError},
			"supply-links":         {Rate: 0.2, Truncate: true},
			"pce-connection-links": {Rate: 0.2, HTML: true},
		},
		"net2grid": {
			NET2GRIDEndpointToken:        {Rate: 0.2, Status: http.StatusInternalServerError},
			NET2GRIDEndpointMeasurements: {Rate: 0.2, Truncate: true},
			"*":                          {Rate: 0.2, Status: http.StatusTooManyRequests, RetryAfter: "1"},
		},
		"grex": {
			GREXEndpointToken:        {Rate: 0.2, Status: http.StatusServiceUnavailable},
			GREXEndpointCertificates: {Rate: 0.2, HTML: true},
			GREXEndpointTransactions: {Rate: 0.2, Truncate: true},
			GREXEndpointAccount:      {Rate: 0.2, Status: http.StatusBadGateway},
		},
	}
}

// SetFaults injects a profile such as ChaosFaults (upstream → endpoint → fault).
func (s *Servers) SetFaults(profile map[string]map[string]Fault) error {
	all := s.faults()
	for up, eps := range profile {
		fs := all[up]
		if fs == nil {
			return errors.New("sandbox: unknown upstream " + strconv.Quote(up))
		}
		for ep, f := range eps {
			fs.Set(ep, f)
		}
	}
	return nil
}

// ClearFaults removes every fault of every upstream.
func (s *Servers) ClearFaults() {
	for _, fs := range s.faults() {
		fs.ClearAll()
	}
}

// Counters returns a snapshot of every fake's counters, by upstream.
func (s *Servers) Counters() map[string]map[string]int64 {
	return map[string]map[string]int64{
		"ingrid": orEmpty(s.INGRID.Counters.Snapshot()), "net2grid": orEmpty(s.NET2GRID.Counters.Snapshot()),
		"grex": orEmpty(s.GREX.Counters.Snapshot()),
	}
}

func orEmpty(m map[string]int64) map[string]int64 {
	if m == nil {
		return map[string]int64{}
	}
	return m
}

// Tokens lists every access and refresh token the fakes still know (spent NET2GRID refresh
// tokens included; spent G-REX refresh tokens are forgotten, so poll it during a run).
func (s *Servers) Tokens() []string {
	var out []string
	s.INGRID.mu.Lock()
	for t := range s.INGRID.tokens {
		out = append(out, t)
	}
	s.INGRID.mu.Unlock()
	s.NET2GRID.mu.Lock()
	for t := range s.NET2GRID.access {
		out = append(out, t)
	}
	for t := range s.NET2GRID.refresh {
		out = append(out, t)
	}
	s.NET2GRID.mu.Unlock()
	s.GREX.mu.Lock()
	for t := range s.GREX.access {
		out = append(out, t)
	}
	for t := range s.GREX.refresh {
		out = append(out, t)
	}
	s.GREX.mu.Unlock()
	slices.Sort(out)
	return out
}

// Revoke invalidates the access tokens issued so far by upstream ("ingrid", "net2grid",
// "grex"): the next data call answers 401 and the client must refresh.
func (s *Servers) Revoke(upstream string) error {
	switch upstream {
	case "ingrid":
		s.INGRID.RevokeTokens()
	case "grex":
		s.GREX.RevokeAccess()
	case "net2grid":
		s.NET2GRID.mu.Lock()
		emails := make([]string, 0, len(s.NET2GRID.users))
		for _, u := range s.NET2GRID.users {
			emails = append(emails, u.email)
		}
		s.NET2GRID.mu.Unlock()
		for _, e := range emails {
			s.NET2GRID.RevokeAccess(e)
		}
	default:
		return errors.New("sandbox: unknown upstream " + strconv.Quote(upstream))
	}
	return nil
}

// Info returns the base URLs and the G-REX login settings.
func (s *Servers) Info() SandboxInfo {
	return SandboxInfo{
		INGRIDURL: s.INGRIDURL, NET2GRIDURL: s.NET2GRIDURL, GREXURL: s.GREXURL,
		GREXAuthorizeURL: s.GREXURL + s.GREX.AuthorizePath(), GREXTokenURL: s.GREXURL + s.GREX.TokenPath(),
		GREXScope: s.GREX.Scope(), GREXClientID: s.GREX.opts.ClientID, GREXRedirectURI: s.GREX.opts.RedirectURI,
		GREXAccounts: s.GREX.Accounts(),
	}
}

// ControlHandler serves the control API (see the top of this file). clock may be nil
// when the fakes run on another clock; the clock endpoints then answer 409.
func (s *Servers) ControlHandler(clock *ControlClock) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sandbox/info", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, http.StatusOK, s.Info()) })
	mux.HandleFunc("GET /_sandbox/counters", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, http.StatusOK, s.Counters()) })
	mux.HandleFunc("GET /_sandbox/tokens", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, http.StatusOK, s.Tokens()) })
	mux.HandleFunc("PUT /_sandbox/faults/{upstream}/{endpoint}", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil {
			WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		if err := s.SetFaults(map[string]map[string]Fault{r.PathValue("upstream"): {r.PathValue("endpoint"): f}}); err != nil {
			WriteJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_sandbox/faults", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sandbox/revoke/{upstream}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Revoke(r.PathValue("upstream")); err != nil {
			WriteJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /_sandbox/clock/{action}", func(w http.ResponseWriter, r *http.Request) {
		if clock == nil {
			WriteJSON(w, http.StatusConflict, map[string]string{"error": "the sandbox runs on a clock it does not control"})
			return
		}
		switch r.PathValue("action") {
		case "freeze":
			clock.Freeze()
		case "resume":
			clock.Resume()
		default:
			WriteJSON(w, http.StatusNotFound, map[string]string{"error": "freeze or resume"})
			return
		}
		WriteJSON(w, http.StatusOK, map[string]string{"now": clock.Now().UTC().Format(time.RFC3339Nano)})
	})
	mux.HandleFunc("POST /_sandbox/grex/approve", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		loc, err := s.GREX.Approve(string(b))
		if err != nil {
			WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, loc)
	})
	return mux
}

// ServeControl serves ControlHandler on its own listener at addr ("127.0.0.1:0" picks a
// port) and returns its base URL; Close stops it with the fakes.
func (s *Servers) ServeControl(addr string, clock *ControlClock) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: s.ControlHandler(clock), ReadHeaderTimeout: 5 * time.Second}
	s.servers = append(s.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}
