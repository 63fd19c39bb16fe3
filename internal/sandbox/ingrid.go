package sandbox

// INGRID fake: GRTgaz's shipper API and its OAuth 2.0 token endpoint on one handler.
//
// No public trace of the INGRID wire format exists; this is the format gridstream assumes
// (see /docs/sources/ingrid.md), written from the connection guide:
//
//	POST /oauth2/token
//	  Authorization: Basic base64(client_id:client_secret)
//	  Content-Type: application/x-www-form-urlencoded
//	  grant_type=client_credentials
//	→ 200 {"access_token":"…","token_type":"Bearer","expires_in":7200}
//	→ 401 {"error":"invalid_client"}          wrong or missing credentials
//	→ 400 {"error":"unsupported_grant_type"}  any other grant
//
//	GET /<dataset>?contractCode=C&startDate=S&endDate=E
//	  Authorization: Bearer <token>   (the bare token is accepted too, as the guide shows it)
//	→ 200 {"contractCode":C,"dataset":"<dataset>","startDate":S,"endDate":E,"count":n,"data":[…]}
//	→ 401 {"error":"invalid_token","message":…}  missing, unknown, expired or revoked token
//	→ 404 {"error":"contract_not_found","message":…}
//	→ 400 {"error":"invalid_request","message":…} bad or too long period
//
// S and E are dates (YYYY-MM-DD, both included: gas days S..E) for every dataset but the
// hourly ones (hourly-measures, hourly-allocations, hourly-exceeding,
// intraday-distributed-quantities), where they are RFC 3339 date-times and the period is
// [S, E) on hour starts. Records are flat JSON objects; quantities are kWh (GCV):
//   - notices (confirmation-notice, operational-notices, consolidated-maintenance-programs):
//     noticeId, version, status published|updated|withdrawn, publishedAt, updatedAt, …;
//     the period filters on the gas day of updatedAt, so a changed notice shows up again.
//   - daily series: gasDay, status, version, updatedAt, unit, quantities; the period filters on
//     gasDay. Actuals are provisional at D+1 07:00, validated at D+1 13:00 and final on the 5th
//     of the next month at 12:00 (Paris); each stage changes the values.
//   - hourly series: hourStart (UTC), gasDay, status, version, updatedAt, unit, quantities;
//     provisional 75–90 min after the hour, validated once the gas day is settled.
//   - reference data (capacities, services, supply-links, pce-connection-links): a few items per
//     contract keyed by their id field, valid from 2023-10-01 with validTo null, each revised
//     every few days; any period returns all of them.
//
// Gas days run 06:00→06:00 Europe/Paris, so they have 23, 24 or 25 hours.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Demo defaults of the INGRID fake: `connector demo` and the tests use them with no
// configuration.
const (
	INGRIDDemoClientID     = "gridstream-demo"
	INGRIDDemoClientSecret = "ingrid-demo-secret"
	INGRIDDemoContract     = "GRTGAZ-DEMO-001"
	INGRIDDemoSeed         = 20231001
	INGRIDDefaultTokenTTL  = 7200 * time.Second
	// INGRIDTokenPath is the token endpoint's path on the fake's handler.
	INGRIDTokenPath = "/oauth2/token"
	// INGRIDTokenEndpoint is the fault and counter name of the token endpoint; data
	// endpoints use their dataset name.
	INGRIDTokenEndpoint = "token"
)

// INGRIDOptions configures the INGRID fake; zero fields take the demo defaults.
type INGRIDOptions struct {
	Clock        Clock // RealClock when nil
	Seed         int64 // INGRIDDemoSeed when zero
	Contracts    []string
	ClientID     string
	ClientSecret string
	TokenTTL     time.Duration
}

// INGRID is a working fake of the GRTgaz INGRID API and its token endpoint.
//
// Counters: "token.issued", "token.rejected", "requests.<endpoint>",
// "unauthorized.<dataset>", "faults.<endpoint>".
type INGRID struct {
	Faults   *Faults
	Counters *Counters

	opts      INGRIDOptions
	contracts map[string]bool
	mux       *http.ServeMux

	mu     sync.Mutex
	tokens map[string]time.Time // access token → expiry
}

// NewINGRID returns the fake with its endpoints registered.
func NewINGRID(opts INGRIDOptions) *INGRID {
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	if opts.Seed == 0 {
		opts.Seed = INGRIDDemoSeed
	}
	if len(opts.Contracts) == 0 {
		opts.Contracts = []string{INGRIDDemoContract}
	}
	if opts.ClientID == "" {
		opts.ClientID = INGRIDDemoClientID
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = INGRIDDemoClientSecret
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = INGRIDDefaultTokenTTL
	}
	counters := &Counters{}
	f := &INGRID{
		Faults:    &Faults{Count: counters},
		Counters:  counters,
		opts:      opts,
		contracts: make(map[string]bool, len(opts.Contracts)),
		mux:       http.NewServeMux(),
		tokens:    make(map[string]time.Time),
	}
	for _, c := range opts.Contracts {
		f.contracts[c] = true
	}
	f.mux.Handle("POST "+INGRIDTokenPath, f.count(INGRIDTokenEndpoint, f.Faults.Wrap(INGRIDTokenEndpoint, http.HandlerFunc(f.serveToken))))
	for _, d := range ingridCatalogue {
		f.mux.Handle("GET /"+d.name, f.count(d.name, f.Faults.Wrap(d.name, f.serveData(d))))
	}
	f.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeINGRIDError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return f
}

// ServeHTTP serves the token endpoint and the data endpoints.
func (f *INGRID) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// RevokeTokens invalidates every access token issued so far, as a key rotation or an
// incident on the real server would: the next data call with one answers 401.
func (f *INGRID) RevokeTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

func (f *INGRID) records(d *ingridDataset, contract string, from, to time.Time) []map[string]any {
	now := f.opts.Clock.Now()
	var recs []ingridRecord
	switch d.kind {
	case ingridNotice:
		recs = d.notices(f.opts.Seed, contract, from, to, now)
	case ingridReference:
		recs = d.references(f.opts.Seed, contract, now)
	default:
		recs = d.series(f.opts.Seed, contract, from, to, now)
	}
	if recs == nil {
		recs = []ingridRecord{}
	}
	return recs
}

func (f *INGRID) count(endpoint string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Counters.Inc("requests." + endpoint)
		h.ServeHTTP(w, r)
	})
}

// serveToken implements the client-credentials grant with HTTP Basic client auth.
func (f *INGRID) serveToken(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if ok && !f.credentialsMatch(id, secret) {
		// RFC 6749 §2.3.1 form-encodes id and secret before Basic auth; accept that form too.
		uid, err1 := url.QueryUnescape(id)
		usec, err2 := url.QueryUnescape(secret)
		ok = err1 == nil && err2 == nil && f.credentialsMatch(uid, usec)
	}
	if !ok {
		f.Counters.Inc("token.rejected")
		w.Header().Set("WWW-Authenticate", `Basic realm="ingrid"`)
		WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "client authentication failed"})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		f.Counters.Inc("token.rejected")
		WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	now := f.opts.Clock.Now()
	f.mu.Lock()
	for t, exp := range f.tokens {
		if !now.Before(exp) {
			delete(f.tokens, t)
		}
	}
	f.tokens[tok] = now.Add(f.opts.TokenTTL)
	f.mu.Unlock()
	f.Counters.Inc("token.issued")
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(f.opts.TokenTTL / time.Second),
	})
}

func (f *INGRID) credentialsMatch(id, secret string) bool {
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(f.opts.ClientID)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(f.opts.ClientSecret)) == 1
	return idOK && secretOK
}

// authorized reports whether the request carries a live access token.
func (f *INGRID) authorized(r *http.Request) bool {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		h = strings.TrimSpace(tok)
	}
	if h == "" {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.tokens[h]
	return ok && f.opts.Clock.Now().Before(exp)
}

// serveData answers GET /<dataset>.
func (f *INGRID) serveData(d *ingridDataset) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !f.authorized(r) {
			f.Counters.Inc("unauthorized." + d.name)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			writeINGRIDError(w, http.StatusUnauthorized, "invalid_token", "access token missing, invalid or expired")
			return
		}
		q := r.URL.Query()
		contract := q.Get("contractCode")
		if contract == "" {
			writeINGRIDError(w, http.StatusBadRequest, "invalid_request", "contractCode is required")
			return
		}
		if !f.contracts[contract] {
			writeINGRIDError(w, http.StatusNotFound, "contract_not_found", fmt.Sprintf("contract %q is not known for this client", contract))
			return
		}
		from, to, err := parseINGRIDPeriod(d, q.Get("startDate"), q.Get("endDate"))
		if err != nil {
			writeINGRIDError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		writeINGRIDPage(w, contract, d.name, q.Get("startDate"), q.Get("endDate"), f.records(d, contract, from, to))
	})
}

// parseINGRIDPeriod turns startDate/endDate into [from, to): whole gas days for dates, hour
// starts for the hourly datasets' date-times.
func parseINGRIDPeriod(d *ingridDataset, start, end string) (from, to time.Time, err error) {
	if start == "" || end == "" {
		return from, to, fmt.Errorf("startDate and endDate are required")
	}
	if d.kind == ingridHourly {
		if from, err = time.Parse(time.RFC3339, start); err != nil {
			return from, to, fmt.Errorf("startDate %q: want an RFC 3339 date-time", start)
		}
		if to, err = time.Parse(time.RFC3339, end); err != nil {
			return from, to, fmt.Errorf("endDate %q: want an RFC 3339 date-time", end)
		}
	} else {
		s, err := time.ParseInLocation(ingridDateLayout, start, ingridParis)
		if err != nil {
			return from, to, fmt.Errorf("startDate %q: want YYYY-MM-DD", start)
		}
		e, err := time.ParseInLocation(ingridDateLayout, end, ingridParis)
		if err != nil {
			return from, to, fmt.Errorf("endDate %q: want YYYY-MM-DD", end)
		}
		from = ingridGasDayStart(s.Year(), s.Month(), s.Day())
		to = ingridGasDayStart(e.Year(), e.Month(), e.Day()+1)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("endDate must not be before startDate")
	}
	if to.Sub(from) > d.maxSpan() {
		return from, to, fmt.Errorf("period longer than %d days", int(d.maxSpan()/(24*time.Hour)))
	}
	return from, to, nil
}

// writeINGRIDPage writes a data answer: the one place that knows the envelope's shape.
func writeINGRIDPage(w http.ResponseWriter, contract, dataset, start, end string, recs []map[string]any) {
	WriteJSON(w, http.StatusOK, map[string]any{
		"contractCode": contract,
		"dataset":      dataset,
		"startDate":    start,
		"endDate":      end,
		"count":        len(recs),
		"data":         recs,
	})
}

// writeINGRIDError writes an INGRID error answer.
func writeINGRIDError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, map[string]any{"status": status, "error": code, "message": msg})
}
