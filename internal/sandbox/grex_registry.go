package sandbox

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// grexClient is one API client's fair-use state, keyed by client id and subject.
type grexClient struct {
	key          string
	requests     []time.Time // accepted requests in the last hour, oldest first
	violations   int
	blockedUntil time.Time
}

// grexRequiredHeaders must be on every registry request (Content-Length only with a body).
var grexRequiredHeaders = []string{"Accept", "Content-Type", "User-Agent"}

// grexEnvelope is the registry's answer envelope for write calls and errors.
type grexEnvelope struct {
	StatusCode      int    `json:"statusCode"`
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
}

func writeGREXError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, grexEnvelope{StatusCode: status, ResponseCode: code, ResponseMessage: msg})
}

// writeGREXFirewall answers as the web application firewall in front of the registry does.
func writeGREXFirewall(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1><p>The request was blocked.</p></body></html>"))
}

type grexHandler func(w http.ResponseWriter, r *http.Request, c *grexClient)

// registry wraps a registry endpoint with faults, counters, the firewall, bearer checks and fair
// use, in the order the real front door applies them.
func (g *GREX) registry(endpoint string, h grexHandler) http.Handler {
	return g.Faults.Wrap(endpoint, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.Counters.Inc("api_requests")
		g.Counters.Inc("requests." + endpoint)
		now := g.clock.Now()

		g.mu.Lock()
		c := g.clientOf(r, now)
		g.mu.Unlock()

		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			g.Counters.Inc("write_attempts")
			g.Counters.Inc("write_attempts." + endpoint)
			g.violation(c, now, endpoint)
			writeGREXError(w, http.StatusBadRequest, "REQUEST_002", "write calls are not accepted from this client")
			return
		}
		if grexMissingHeader(r) || grexFirewallQuery(r) {
			g.Counters.Inc("forbidden." + endpoint)
			g.violation(c, now, endpoint)
			writeGREXFirewall(w)
			return
		}
		if c == nil {
			g.Counters.Inc("unauthorized." + endpoint)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeGREXError(w, http.StatusUnauthorized, "AUTH_401", "missing, invalid or expired access token")
			return
		}

		g.mu.Lock()
		if now.Before(c.blockedUntil) {
			g.mu.Unlock()
			g.Counters.Inc("blocked." + endpoint)
			writeGREXError(w, http.StatusForbidden, "FAIRUSE_403", "client blocked after repeated fair-use violations")
			return
		}
		cut := 0
		for cut < len(c.requests) && !c.requests[cut].After(now.Add(-time.Hour)) {
			cut++
		}
		c.requests = c.requests[cut:]
		perMinute := 0
		for _, t := range c.requests {
			if t.After(now.Add(-time.Minute)) {
				perMinute++
			}
		}
		if perMinute >= g.opts.PerMinute || len(c.requests) >= g.opts.PerHour {
			g.mu.Unlock()
			g.Counters.Inc("rate_limited." + endpoint)
			g.violation(c, now, endpoint)
			writeGREXError(w, http.StatusTooManyRequests, "FAIRUSE_429", "fair use exceeded: at most 100 requests per minute and 500 per hour")
			return
		}
		c.requests = append(c.requests, now)
		g.served = append(g.served, now)
		g.mu.Unlock()
		g.Counters.Inc("served." + endpoint)
		h(w, r, c)
	}))
}

// clientOf returns the fair-use state of the request's valid bearer token, or nil. g.mu held.
func (g *GREX) clientOf(r *http.Request, now time.Time) *grexClient {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		return nil
	}
	t := g.access[tok]
	if t == nil || !now.Before(t.expires) {
		return nil
	}
	key := t.clientID + "/" + t.subject
	c := g.clients[key]
	if c == nil {
		c = &grexClient{key: key}
		g.clients[key] = c
	}
	return c
}

// violation counts a fair-use violation and blocks the client after MaxViolations.
func (g *GREX) violation(c *grexClient, now time.Time, endpoint string) {
	g.Counters.Inc("violations")
	g.Counters.Inc("violations." + endpoint)
	if c == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	c.violations++
	if c.violations >= g.opts.MaxViolations {
		c.blockedUntil = now.Add(g.opts.BlockFor)
		c.violations = 0
		g.Counters.Inc("blocks")
	}
}

func grexMissingHeader(r *http.Request) bool {
	for _, h := range grexRequiredHeaders {
		if strings.TrimSpace(r.Header.Get(h)) == "" {
			return true
		}
	}
	if r.Host == "" {
		return true
	}
	// A body needs its length announced.
	return r.ContentLength < 0
}

// grexFirewallQuery reports a query value the firewall refuses: "/" or a URL.
func grexFirewallQuery(r *http.Request) bool {
	for _, vs := range r.URL.Query() {
		for _, v := range vs {
			if strings.Contains(v, "/") || strings.Contains(strings.ToLower(v), "https://") {
				return true
			}
		}
	}
	return false
}

// grexListQuery is a parsed list request.
type grexListQuery struct {
	from, to  time.Time
	skip, top int
}

var grexFilterRE = regexp.MustCompile(`^ModifiedAt ge (\S+?)(?: and ModifiedAt lt (\S+))?$`)

// parseList reads $top, $skip, $filter and $orderby; idField is the tie-breaker of the order.
func (g *GREX) parseList(r *http.Request, idField string) (grexListQuery, string, bool) {
	q := r.URL.Query()
	lq := grexListQuery{top: g.opts.MaxTop}
	if v := q.Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > g.opts.MaxTop {
			return lq, "$top must be between 1 and " + strconv.Itoa(g.opts.MaxTop), false
		}
		lq.top = n
	}
	if v := q.Get("$skip"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return lq, "$skip must be a non-negative integer", false
		}
		lq.skip = n
	}
	if v := q.Get("$filter"); v != "" {
		m := grexFilterRE.FindStringSubmatch(strings.TrimSpace(v))
		if m == nil {
			return lq, "unsupported $filter: use ModifiedAt ge <date-time> [and ModifiedAt lt <date-time>]", false
		}
		var err error
		if lq.from, err = time.Parse(time.RFC3339Nano, m[1]); err != nil {
			return lq, "$filter date-time is not RFC 3339", false
		}
		if m[2] != "" {
			if lq.to, err = time.Parse(time.RFC3339Nano, m[2]); err != nil {
				return lq, "$filter date-time is not RFC 3339", false
			}
		}
	}
	if v := q.Get("$orderby"); v != "" {
		norm := strings.ReplaceAll(strings.ReplaceAll(v, ", ", ","), " asc", "")
		if norm != "ModifiedAt,"+idField && norm != "ModifiedAt" {
			return lq, "unsupported $orderby: use ModifiedAt asc," + idField + " asc", false
		}
	}
	return lq, "", true
}

// account returns the known account of the path, advanced to now, or answers 404. g.mu held.
func (g *GREX) account(w http.ResponseWriter, r *http.Request) *grexAccount {
	a := g.accounts[r.PathValue("account")]
	if a == nil {
		writeGREXError(w, http.StatusNotFound, "ACCOUNT_002", "account not found or not accessible")
		return nil
	}
	a.advance(g.clock.Now())
	return a
}

func grexAcceptsJSON(w http.ResponseWriter, r *http.Request) bool {
	acc := r.Header.Get("Accept")
	if strings.Contains(acc, "json") || strings.Contains(acc, "*/*") {
		return true
	}
	writeGREXError(w, http.StatusNotAcceptable, "REQUEST_406", "only application/json is served to this client")
	return false
}

func (g *GREX) serveAccount(w http.ResponseWriter, r *http.Request, _ *grexClient) {
	if !grexAcceptsJSON(w, r) {
		return
	}
	g.mu.Lock()
	a := g.account(w, r)
	if a == nil {
		g.mu.Unlock()
		return
	}
	s := grexAccountSummary{
		AccountNumber: a.number, AccountName: "Sandbox account " + a.number, AccountType: "Trade",
		Status: "Active", BundleCount: len(a.bundles), ModifiedAt: grexTime(a.modified),
	}
	for _, b := range a.bundles {
		switch b.Status {
		case GREXStatusActive:
			s.ActiveVolume += b.Volume
		case GREXStatusLocked:
			s.LockedVolume += b.Volume
		}
	}
	g.mu.Unlock()
	WriteJSON(w, http.StatusOK, s)
}

func (g *GREX) serveBundles(w http.ResponseWriter, r *http.Request, _ *grexClient) {
	if !grexAcceptsJSON(w, r) {
		return
	}
	lq, msg, ok := g.parseList(r, "BundleId")
	if !ok {
		writeGREXError(w, http.StatusBadRequest, "REQUEST_001", msg)
		return
	}
	g.mu.Lock()
	a := g.account(w, r)
	if a == nil {
		g.mu.Unlock()
		return
	}
	page := grexWindow(a.bundles, func(b *grexBundle) time.Time { return b.modified },
		func(b *grexBundle) string { return b.BundleID }, lq.from, lq.to, lq.skip, lq.top)
	out := make([]grexBundle, len(page))
	for i, b := range page {
		out[i] = *b
	}
	g.mu.Unlock()
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
}

func (g *GREX) serveTransactions(w http.ResponseWriter, r *http.Request, _ *grexClient) {
	if !grexAcceptsJSON(w, r) {
		return
	}
	lq, msg, ok := g.parseList(r, "TransactionId")
	if !ok {
		writeGREXError(w, http.StatusBadRequest, "REQUEST_001", msg)
		return
	}
	g.mu.Lock()
	a := g.account(w, r)
	if a == nil {
		g.mu.Unlock()
		return
	}
	page := grexWindow(a.txs, func(t *grexTransaction) time.Time { return t.modified },
		func(t *grexTransaction) string { return t.TransactionID }, lq.from, lq.to, lq.skip, lq.top)
	out := make([]grexTransaction, len(page))
	for i, t := range page {
		out[i] = *t
	}
	g.mu.Unlock()
	WriteJSON(w, http.StatusOK, map[string]any{"value": out})
}
