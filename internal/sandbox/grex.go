package sandbox

// G-REX fake: a Grexel G-REX registry (certificate bundles and transactions per account)
// behind an Azure AD B2C login with PKCE, enforcing the registry's fair-use rules.
//
// Wire format (chosen from the G-REX API manual 3.2 and the EnergyTag bundle shape until real
// G-REX payloads are known; every path and field name is declared in this file only):
//
// Auth (B2C, same handler, paths as under https://{dir}.b2clogin.com):
//
//	GET  /{dir}.onmicrosoft.com/{policy}/oauth2/v2.0/authorize
//	     ?response_type=code&client_id&redirect_uri&scope&state&code_challenge&code_challenge_method=S256
//	     → 302 {redirect_uri}?code=...&state=... (auto-approve, the default; or &auto_approve=1),
//	       otherwise a small HTML approval form; bad input → 302 {redirect_uri}?error=...&state=...
//	       (400 page when client_id or redirect_uri themselves are wrong). response_type=token
//	       (implicit) → unsupported_response_type.
//	POST /{dir}.onmicrosoft.com/{policy}/oauth2/v2.0/token (form)
//	     grant_type=authorization_code: code, client_id, redirect_uri, code_verifier (S256 checked,
//	     codes single-use, 10 min); grant_type=refresh_token: refresh_token, client_id (rotation:
//	     the old refresh token dies). Answer: access_token, token_type, expires_in, refresh_token,
//	     refresh_token_expires_in, scope. password (ROPC) and anything else → unsupported_grant_type.
//
// Registry (bearer required, 401 otherwise; paths below, {account} = account number):
//
//	GET /AH/managementapi/v2/Accounts/{account}                      account summary (object)
//	GET /AH/managementapi/v2/Accounts/{account}/CertificateBundles   {"value":[bundle...]}
//	GET /AH/transactionapi/v1/Accounts/{account}/Transactions        {"value":[transaction...]}
//
// List query options (OData style): $top (1..100, default 100), $skip (>= 0),
// $filter=ModifiedAt ge <RFC3339> [and ModifiedAt lt <RFC3339>], $orderby=ModifiedAt asc,BundleId asc
// (transactions: ModifiedAt asc,TransactionId asc); results are always in that stable order.
//
//	bundle:      {"BundleId","AccountNumber","CertificateIdStart","CertificateIdEnd","Volume",
//	              "EnergySourceCode","TechnologyCode","ProductionPeriodStart","ProductionPeriodEnd",
//	              "DeviceId","Status","IssuedAt","ModifiedAt"}
//	             Status ∈ Active, Transferred, Cancelled, Expired, Withdrawn, Locked.
//	transaction: {"TransactionId","AccountNumber","TransactionType","BundleId","CertificateIdStart",
//	              "CertificateIdEnd","Volume","CounterpartyAccountNumber","TransactionDate","ModifiedAt"}
//	             TransactionType ∈ Issuance, Transfer, Cancellation, Expiry, Withdrawal, Lock, Unlock.
//
// Errors use the registry envelope {"statusCode":400,"responseCode":"...","responseMessage":"..."}.
// Fair use, per client (access token client id and subject): 100 requests per sliding minute and
// 500 per sliding hour → 429; every 429, firewall 403 (missing Accept, Content-Type, User-Agent or
// Host header; "/" or "https://" inside a query value) and write method (POST, PUT, PATCH, DELETE →
// 400 envelope, counted as write_attempts) is a violation; after MaxViolations the client is
// blocked (403) for BlockFor. Content-Length is not required on a body-less GET, since Go's
// client cannot send it.
//
// Data are deterministic from Seed and the Clock: each account starts with Bundles bundles
// issued over the previous half year (in batches sharing one ModifiedAt), and every EventEvery of
// simulated time each account sees one event (issuance, transfer, cancellation, expiry,
// withdrawal, lock or unlock) that moves the bundle's ModifiedAt forward and adds a transaction.

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Demo values of the G-REX sandbox, so `connector demo` runs with no configuration.
const (
	// GREXDemoDirectory is the B2C directory (tenant) name of the sandbox.
	GREXDemoDirectory = "gcrfdemo"
	// GREXDemoPolicy is the B2C sign-in policy of the sandbox.
	GREXDemoPolicy = "B2C_1_SignIn"
	// GREXDemoClientID is the public client id registered in the sandbox.
	GREXDemoClientID = "9e818394-185c-47e7-8b93-714714bfcf8f"
	// GREXDemoRedirectURI is the native-client redirect registered in the sandbox.
	GREXDemoRedirectURI = "https://gcrfdemo.b2clogin.com/oauth2/nativeclient"
	// GREXDemoAccounts are the sandbox's account numbers, comma-separated.
	GREXDemoAccounts = "FR0001,FR0002"
	// GREXDemoSeed seeds the sandbox's data.
	GREXDemoSeed = 42
	// GREXDemoBundles is how many bundles each demo account starts with.
	GREXDemoBundles = 60
	// GREXDemoSubject is the user an auto-approved login signs in as.
	GREXDemoSubject = "demo-operator"
)

// G-REX defaults, as the API manual and the B2C defaults give them.
const (
	GREXDefaultAccessTTL     = time.Hour
	GREXDefaultRefreshTTL    = 24 * time.Hour
	GREXDefaultPerMinute     = 100
	GREXDefaultPerHour       = 500
	GREXDefaultMaxViolations = 3
	GREXDefaultBlockFor      = time.Hour
	GREXDefaultMaxTop        = 100
	GREXDefaultEventEvery    = 15 * time.Minute
	grexCodeTTL              = 10 * time.Minute
)

// Registry paths of the fake, relative to the API host. Kept here only.
const (
	grexAccountPath      = "/AH/managementapi/v2/Accounts/{account}"
	grexCertificatesPath = "/AH/managementapi/v2/Accounts/{account}/CertificateBundles"
	grexTransactionsPath = "/AH/transactionapi/v1/Accounts/{account}/Transactions"
)

// Endpoint names used for Faults and Counters.
const (
	GREXEndpointAuthorize    = "authorize"
	GREXEndpointToken        = "token"
	GREXEndpointAccount      = "account"
	GREXEndpointCertificates = "certificates"
	GREXEndpointTransactions = "transactions"
)

// GREXOptions configures the fake. Zero values take the demo defaults.
type GREXOptions struct {
	Clock       Clock  // RealClock when nil
	Seed        uint64 // data seed (GREXDemoSeed when zero)
	Directory   string // B2C directory, GREXDemoDirectory when empty
	Policy      string // B2C policy, GREXDemoPolicy when empty
	ClientID    string // GREXDemoClientID when empty
	RedirectURI string // GREXDemoRedirectURI when empty
	Accounts    []string
	// Bundles is how many bundles each account starts with (GREXDemoBundles when zero,
	// none when negative).
	Bundles int
	// EventEvery is the simulated time between two events of one account (GREXDefaultEventEvery
	// when zero; negative: data never change).
	EventEvery time.Duration
	AccessTTL  time.Duration // access token lifetime
	RefreshTTL time.Duration // refresh token lifetime from its issue (sliding with rotation)
	// SessionTTL, when set, bounds the whole chain of refresh tokens from the interactive login.
	SessionTTL    time.Duration
	PerMinute     int           // fair use per sliding minute
	PerHour       int           // fair use per sliding hour
	MaxViolations int           // violations before a block
	BlockFor      time.Duration // how long a block lasts
	MaxTop        int           // largest $top accepted
	// ManualApproval makes the authorize GET show an approval form instead of redirecting at
	// once (a request with auto_approve=1 still redirects at once).
	ManualApproval bool
}

// GREX is the fake G-REX registry and its B2C login. It implements http.Handler.
type GREX struct {
	Faults   *Faults
	Counters *Counters

	opts    GREXOptions
	clock   Clock
	handler http.Handler

	mu       sync.Mutex
	codes    map[string]*grexCode
	access   map[string]*grexToken
	refresh  map[string]*grexToken
	clients  map[string]*grexClient
	accounts map[string]*grexAccount
	order    []string    // account numbers as configured
	served   []time.Time // arrival of every request let through fair use, in order
}

// NewGREX returns a fake G-REX whose data start at the clock's current time.
func NewGREX(opts GREXOptions) *GREX {
	if opts.Clock == nil {
		opts.Clock = RealClock{}
	}
	if opts.Seed == 0 {
		opts.Seed = GREXDemoSeed
	}
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&opts.Directory, GREXDemoDirectory)
	def(&opts.Policy, GREXDemoPolicy)
	def(&opts.ClientID, GREXDemoClientID)
	def(&opts.RedirectURI, GREXDemoRedirectURI)
	if len(opts.Accounts) == 0 {
		opts.Accounts = strings.Split(GREXDemoAccounts, ",")
	}
	if opts.Bundles == 0 {
		opts.Bundles = GREXDemoBundles
	}
	defDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defDur(&opts.EventEvery, GREXDefaultEventEvery)
	defDur(&opts.AccessTTL, GREXDefaultAccessTTL)
	defDur(&opts.RefreshTTL, GREXDefaultRefreshTTL)
	defDur(&opts.BlockFor, GREXDefaultBlockFor)
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&opts.PerMinute, GREXDefaultPerMinute)
	defInt(&opts.PerHour, GREXDefaultPerHour)
	defInt(&opts.MaxViolations, GREXDefaultMaxViolations)
	defInt(&opts.MaxTop, GREXDefaultMaxTop)

	counters := &Counters{}
	g := &GREX{
		Faults:   &Faults{Count: counters},
		Counters: counters,
		opts:     opts,
		clock:    opts.Clock,
		codes:    map[string]*grexCode{},
		access:   map[string]*grexToken{},
		refresh:  map[string]*grexToken{},
		clients:  map[string]*grexClient{},
		accounts: map[string]*grexAccount{},
	}
	start := opts.Clock.Now().UTC().Truncate(time.Second)
	for i, a := range opts.Accounts {
		if _, dup := g.accounts[a]; dup {
			continue
		}
		g.order = append(g.order, a)
		g.accounts[a] = newGREXAccount(a, i, opts.Seed, start, max(opts.Bundles, 0), opts.EventEvery)
	}

	mux := http.NewServeMux()
	mux.Handle(g.AuthorizePath(), g.Faults.Wrap(GREXEndpointAuthorize, http.HandlerFunc(g.authorize)))
	mux.Handle(g.TokenPath(), g.Faults.Wrap(GREXEndpointToken, http.HandlerFunc(g.token)))
	mux.Handle(grexAccountPath, g.registry(GREXEndpointAccount, g.serveAccount))
	mux.Handle(grexCertificatesPath, g.registry(GREXEndpointCertificates, g.serveBundles))
	mux.Handle(grexTransactionsPath, g.registry(GREXEndpointTransactions, g.serveTransactions))
	mux.Handle("/AH/", g.registry("unknown", func(w http.ResponseWriter, _ *http.Request, _ *grexClient) {
		writeGREXError(w, http.StatusNotFound, "RESOURCE_404", "resource not found")
	}))
	g.handler = mux
	return g
}

// ServeHTTP serves the B2C endpoints and the registry API.
func (g *GREX) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// AuthorizePath is the path of the B2C authorize endpoint.
func (g *GREX) AuthorizePath() string {
	return "/" + g.opts.Directory + ".onmicrosoft.com/" + g.opts.Policy + "/oauth2/v2.0/authorize"
}

// TokenPath is the path of the B2C token endpoint.
func (g *GREX) TokenPath() string {
	return "/" + g.opts.Directory + ".onmicrosoft.com/" + g.opts.Policy + "/oauth2/v2.0/token"
}

// Scope is the scope a client asks for: the API's user_impersonation, openid and
// offline_access (which a refresh token needs).
func (g *GREX) Scope() string { return GREXScope(g.opts.Directory, g.opts.ClientID) }

// GREXScope builds the G-REX scope of a B2C directory and app id.
func GREXScope(dir, appID string) string {
	return "https://" + dir + ".onmicrosoft.com/" + appID + "/user_impersonation openid offline_access"
}

// Accounts lists the fake's account numbers.
func (g *GREX) Accounts() []string { return append([]string(nil), g.order...) }

// RevokeRefresh invalidates every refresh token issued so far, as a password reset or an
// administrator's revocation does: the next renewal fails and a new login is needed.
func (g *GREX) RevokeRefresh() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.refresh)
}

// RevokeAccess invalidates every access token issued so far: the next API call answers 401.
func (g *GREX) RevokeAccess() {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(g.access)
}

// Violations returns how many fair-use violations the fake has counted in total.
func (g *GREX) Violations() int64 { return g.Counters.Get("violations") }

// APIRequests returns how many registry API requests arrived (any method, any answer).
func (g *GREX) APIRequests() int64 { return g.Counters.Get("api_requests") }

// Served returns how many registry requests were let through fair use (and served, or failed
// by the data handler) with an arrival time in [from, to): the usage statistics the real
// registry does not give, so tests can check how much of a budget a client used.
func (g *GREX) Served(from, to time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, t := range g.served {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// Approve plays the person at the browser for the demo: it opens authorizeURL (an authorize
// request for this fake, on any host) in process, approves it, and returns the redirect URL the
// browser would land on, ready to paste into the login command.
func (g *GREX) Approve(authorizeURL string) (string, error) {
	u, err := url.Parse(authorizeURL)
	if err != nil || u.Path != g.AuthorizePath() {
		return "", errors.New("sandbox grex: not an authorize URL of this sandbox")
	}
	q := u.Query()
	q.Set("auto_approve", "1")
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, g.AuthorizePath()+"?"+q.Encode(), nil))
	if rec.Code != http.StatusFound {
		return "", errors.New("sandbox grex: authorize answered " + http.StatusText(rec.Code))
	}
	return rec.Header().Get("Location"), nil
}
