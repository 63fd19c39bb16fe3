// Package config reads gridstream's configuration from GRIDSTREAM_* environment variables
// (kelseyhightower/envconfig), fills secrets from *_FILE variables (Kubernetes secret
// mounts), and validates everything once at start-up with errors that name the variable.
// It is the one place for defaults.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gridstream/gridstream/internal/secret"
	"github.com/kelseyhightower/envconfig"
)

// Prefix is the environment variable prefix.
const Prefix = "GRIDSTREAM"

// Config is everything the connector reads from its environment.
type Config struct {
	LogLevel  string `split_words:"true" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `split_words:"true" default:"json" desc:"json or text"`
	HTTPAddr  string `split_words:"true" default:":9090" desc:"address of /healthz, /readyz, /metrics and the status page; empty disables"`
	Workers   int    `split_words:"true" default:"16" desc:"polls running at once (quotas, not workers, bound upstream requests)"`
	// TokenKey encrypts refresh tokens at rest (AES-256-GCM).
	TokenKey secret.Value `split_words:"true" desc:"32-byte key, hex or base64, that encrypts stored refresh tokens (required when NET2GRID or G-REX is enabled)"`

	NATS   NATS
	Stream Stream
	KV     KV
	Lease  Lease

	INGRID   INGRID
	NET2GRID NET2GRID
	GREX     GREX
}

// NATS is how to reach the bus.
type NATS struct {
	URL        string       `split_words:"true" desc:"NATS server URL(s), comma-separated; empty starts an embedded nats-server with JetStream"`
	CredsFile  string       `split_words:"true" desc:"NATS .creds file"`
	NKeyFile   string       `split_words:"true" desc:"NATS nkey seed file"`
	User       string       `split_words:"true" desc:"NATS user"`
	Password   secret.Value `split_words:"true" desc:"NATS password (or _FILE)"`
	Token      secret.Value `split_words:"true" desc:"NATS token (or _FILE)"`
	CAFile     string       `split_words:"true" desc:"custom CA for TLS to NATS"`
	CertFile   string       `split_words:"true" desc:"client certificate for mutual TLS"`
	KeyFile    string       `split_words:"true" desc:"client key for mutual TLS"`
	DataDir    string       `split_words:"true" default:"./data/nats" desc:"JetStream store of the embedded server (only when URL is empty)"`
	MaxPending int          `split_words:"true" default:"1024" desc:"async publishes in flight before publishing waits for acks"`
}

// Stream is the JetStream stream events go to.
type Stream struct {
	Name            string        `split_words:"true" default:"ENERGY" desc:"stream name"`
	SubjectPrefix   string        `split_words:"true" default:"energy" desc:"first subject token(s); the stream takes <prefix>.>"`
	DuplicateWindow time.Duration `split_words:"true" default:"24h" desc:"JetStream duplicate window for Nats-Msg-Id"`
	MaxAge          time.Duration `split_words:"true" default:"2160h" desc:"how long events are kept (0 = forever)"`
	Storage         string        `split_words:"true" default:"file" desc:"file or memory"`
	Replicas        int           `split_words:"true" default:"1" desc:"stream and bucket replicas (3 on a production cluster)"`
}

// KV names the state buckets.
type KV struct {
	Cursors string `split_words:"true" default:"gridstream_cursors" desc:"bucket of job cursors"`
	Seen    string `split_words:"true" default:"gridstream_seen" desc:"bucket of the seen-store"`
	Tokens  string `split_words:"true" default:"gridstream_tokens" desc:"bucket of encrypted refresh tokens"`
	Quota   string `split_words:"true" default:"gridstream_quota" desc:"bucket of shared quota counters"`
	Leases  string `split_words:"true" default:"gridstream_leases" desc:"bucket of job leases"`
}

// UserAgent is sent to every upstream; G-REX's firewall wants one naming the client.
func UserAgent(version string) string {
	return "gridstream/" + version + " (+https://github.com/gridstream/gridstream)"
}

// Lease is how replicas share jobs.
type Lease struct {
	TTL     time.Duration `split_words:"true" default:"30s" desc:"a dead replica's jobs move after this long"`
	Replica string        `split_words:"true" desc:"this replica's name (default: host name)"`
}

// INGRID is GRTgaz's API.
type INGRID struct {
	Enabled      bool          `split_words:"true" desc:"poll GRTgaz INGRID"`
	TokenURL     string        `split_words:"true" default:"https://auth-api.offre.grtgaz.com/oauth2/token" desc:"OAuth2 token endpoint (test: https://auth-api.offre-stg.grtgaz.com/oauth2/token)"`
	APIBase      string        `split_words:"true" default:"https://api.ingrid.grtgaz.com" desc:"API base URL (test: https://api.ingrid-stg.grtgaz.com)"`
	ClientID     string        `split_words:"true" desc:"OAuth2 client id"`
	ClientSecret secret.Value  `split_words:"true" desc:"OAuth2 client secret (or _FILE)"`
	AuthScheme   string        `split_words:"true" default:"Bearer" desc:"scheme before the token in Authorization"`
	Contracts    []string      `split_words:"true" desc:"contract codes, comma-separated"`
	Datasets     []string      `split_words:"true" desc:"datasets to poll, comma-separated (empty = all)"`
	PerMinute    int           `split_words:"true" default:"60" desc:"request limit per minute (0 = none)"`
	PerHour      int           `split_words:"true" default:"0" desc:"request limit per hour (0 = none)"`
	Timeout      time.Duration `split_words:"true" default:"30s" desc:"per-request timeout"`
}

// NET2GRID is the smart-meter insight platform of one label partner.
type NET2GRID struct {
	Enabled      bool          `split_words:"true" desc:"poll NET2GRID"`
	APIBase      string        `split_words:"true" desc:"CE-API base URL of the label partner's instance (token URL is <base>/v2/token)"`
	TokenURL     string        `split_words:"true" desc:"token endpoint (default <API_BASE>/v2/token)"`
	ClientID     string        `split_words:"true" desc:"label partner's client id"`
	ClientSecret secret.Value  `split_words:"true" desc:"label partner's client secret (or _FILE)"`
	UsersBucket  string        `split_words:"true" default:"gridstream_net2grid_users" desc:"bucket of the end users polled (managed with connector users)"`
	PerMinute    int           `split_words:"true" default:"600" desc:"request limit per minute over all users (0 = none)"`
	Timeout      time.Duration `split_words:"true" default:"30s" desc:"per-request timeout"`
}

// GREX is a Grexel G-REX registry.
type GREX struct {
	Enabled      bool          `split_words:"true" desc:"poll Grexel G-REX"`
	APIBase      string        `split_words:"true" default:"https://eexfranceapi.grexel.com" desc:"registry API host (demo: https://eexfrancedemoapi.grexel.com)"`
	AuthorizeURL string        `split_words:"true" default:"https://gcrfr.b2clogin.com/gcrfr.onmicrosoft.com/B2C_1_SignIn/oauth2/v2.0/authorize" desc:"B2C authorize endpoint"`
	TokenURL     string        `split_words:"true" default:"https://gcrfr.b2clogin.com/gcrfr.onmicrosoft.com/B2C_1_SignIn/oauth2/v2.0/token" desc:"B2C token endpoint"`
	ClientID     string        `split_words:"true" default:"57652e54-8e9d-49b4-bcb8-402c95e8c020" desc:"B2C application (client) id"`
	RedirectURI  string        `split_words:"true" default:"https://gcrfr.b2clogin.com/oauth2/nativeclient" desc:"registered redirect URI"`
	Scope        string        `split_words:"true" default:"https://gcrfr.onmicrosoft.com/57652e54-8e9d-49b4-bcb8-402c95e8c020/user_impersonation openid offline_access" desc:"scopes asked at login and refresh"`
	Accounts     []string      `split_words:"true" desc:"account numbers, comma-separated"`
	PerMinute    int           `split_words:"true" default:"100" desc:"fair-use limit per minute (registry: 100)"`
	PerHour      int           `split_words:"true" default:"500" desc:"fair-use limit per hour (registry: 500)"`
	RefreshWarn  time.Duration `split_words:"true" default:"6h" desc:"alert this long before the refresh token expires"`
	Timeout      time.Duration `split_words:"true" default:"30s" desc:"per-request timeout"`
}

// Load reads the environment. Fields use split_words rather than explicit envconfig
// names because envconfig falls back to the unprefixed explicit name: a field tagged
// "USER" would silently read the shell's $USER.
//
// Load does not validate: call Validate.
func Load() (Config, error) {
	var c Config
	if err := envconfig.Process(Prefix, &c); err != nil {
		return c, fmt.Errorf("configuration: %w", err)
	}
	if err := c.loadSecretFiles(os.ReadFile); err != nil {
		return c, err
	}
	return c, nil
}

// Defaults returns the configuration with every default and nothing from the environment.
func Defaults() Config {
	var c Config
	_ = envconfig.Process("GRIDSTREAM_DEFAULTS_ONLY_X", &c) // no variable carries this prefix
	return c
}

// secrets lists every secret with its variable, for the _FILE variants.
func (c *Config) secrets() map[string]*secret.Value {
	return map[string]*secret.Value{
		"GRIDSTREAM_TOKEN_KEY":              &c.TokenKey,
		"GRIDSTREAM_NATS_PASSWORD":          &c.NATS.Password,
		"GRIDSTREAM_NATS_TOKEN":             &c.NATS.Token,
		"GRIDSTREAM_INGRID_CLIENT_SECRET":   &c.INGRID.ClientSecret,
		"GRIDSTREAM_NET2GRID_CLIENT_SECRET": &c.NET2GRID.ClientSecret,
	}
}

// loadSecretFiles fills each secret from <NAME>_FILE when that variable is set.
func (c *Config) loadSecretFiles(read func(string) ([]byte, error)) error {
	for name, v := range c.secrets() {
		path := os.Getenv(name + "_FILE")
		if path == "" {
			continue
		}
		if !v.IsZero() {
			return fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
		}
		b, err := read(path)
		if err != nil {
			return fmt.Errorf("%s_FILE: %w", name, err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return fmt.Errorf("%s_FILE: %s is empty", name, path)
		}
		*v = secret.New(s)
	}
	return nil
}

var subjectPrefix = regexp.MustCompile(`^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`)
var bucketName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// Validate checks the whole configuration and reports every problem, each naming its
// variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("GRIDSTREAM_%s: "+format, append([]any{name}, args...)...))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("LOG_FORMAT", "%q is not json or text", c.LogFormat)
	}
	if c.Workers < 1 {
		bad("WORKERS", "must be at least 1, got %d", c.Workers)
	}
	if c.NATS.MaxPending < 1 {
		bad("NATS_MAX_PENDING", "must be at least 1, got %d", c.NATS.MaxPending)
	}
	if c.NATS.URL == "" && c.NATS.DataDir == "" {
		bad("NATS_DATA_DIR", "must be set when GRIDSTREAM_NATS_URL is empty (embedded server)")
	}
	if (c.NATS.CertFile == "") != (c.NATS.KeyFile == "") {
		bad("NATS_CERT_FILE", "and GRIDSTREAM_NATS_KEY_FILE must be set together")
	}
	if c.Stream.Name == "" || strings.ContainsAny(c.Stream.Name, ". *>") {
		bad("STREAM_NAME", "%q is not a valid stream name", c.Stream.Name)
	}
	if !subjectPrefix.MatchString(c.Stream.SubjectPrefix) {
		bad("STREAM_SUBJECT_PREFIX", "%q must be dot-separated tokens of [a-z0-9_-]", c.Stream.SubjectPrefix)
	}
	if c.Stream.DuplicateWindow <= 0 {
		bad("STREAM_DUPLICATE_WINDOW", "must be positive, got %s", c.Stream.DuplicateWindow)
	}
	if c.Stream.MaxAge < 0 || (c.Stream.MaxAge > 0 && c.Stream.MaxAge < c.Stream.DuplicateWindow) {
		bad("STREAM_MAX_AGE", "must be 0 (forever) or at least the duplicate window, got %s", c.Stream.MaxAge)
	}
	if c.Stream.Storage != "file" && c.Stream.Storage != "memory" {
		bad("STREAM_STORAGE", "%q is not file or memory", c.Stream.Storage)
	}
	if c.Stream.Replicas < 1 || c.Stream.Replicas > 5 {
		bad("STREAM_REPLICAS", "must be 1 to 5, got %d", c.Stream.Replicas)
	}
	for name, b := range map[string]string{"KV_CURSORS": c.KV.Cursors, "KV_SEEN": c.KV.Seen, "KV_TOKENS": c.KV.Tokens, "KV_QUOTA": c.KV.Quota, "KV_LEASES": c.KV.Leases} {
		if !bucketName.MatchString(b) {
			bad(name, "%q is not a valid bucket name", b)
		}
	}
	if c.Lease.TTL < time.Second {
		bad("LEASE_TTL", "must be at least 1s, got %s", c.Lease.TTL)
	}
	if !c.INGRID.Enabled && !c.NET2GRID.Enabled && !c.GREX.Enabled {
		errs = append(errs, errors.New("no source enabled: set GRIDSTREAM_INGRID_ENABLED, GRIDSTREAM_NET2GRID_ENABLED or GRIDSTREAM_GREX_ENABLED to true (or run `connector demo`)"))
	}
	if c.INGRID.Enabled {
		checkURL(bad, "INGRID_TOKEN_URL", c.INGRID.TokenURL)
		checkURL(bad, "INGRID_API_BASE", c.INGRID.APIBase)
		if c.INGRID.ClientID == "" {
			bad("INGRID_CLIENT_ID", "is required when INGRID is enabled")
		}
		if c.INGRID.ClientSecret.IsZero() {
			bad("INGRID_CLIENT_SECRET", "is required when INGRID is enabled (or GRIDSTREAM_INGRID_CLIENT_SECRET_FILE)")
		}
		if len(c.INGRID.Contracts) == 0 {
			bad("INGRID_CONTRACTS", "needs at least one contract code")
		}
		checkRate(bad, "INGRID_PER_MINUTE", c.INGRID.PerMinute)
		checkRate(bad, "INGRID_PER_HOUR", c.INGRID.PerHour)
		checkTimeout(bad, "INGRID_TIMEOUT", c.INGRID.Timeout)
	}
	if c.NET2GRID.Enabled {
		checkURL(bad, "NET2GRID_API_BASE", c.NET2GRID.APIBase)
		if c.NET2GRID.TokenURL != "" {
			checkURL(bad, "NET2GRID_TOKEN_URL", c.NET2GRID.TokenURL)
		}
		if c.NET2GRID.ClientID == "" {
			bad("NET2GRID_CLIENT_ID", "is required when NET2GRID is enabled")
		}
		if c.NET2GRID.ClientSecret.IsZero() {
			bad("NET2GRID_CLIENT_SECRET", "is required when NET2GRID is enabled (or GRIDSTREAM_NET2GRID_CLIENT_SECRET_FILE)")
		}
		checkRate(bad, "NET2GRID_PER_MINUTE", c.NET2GRID.PerMinute)
		checkTimeout(bad, "NET2GRID_TIMEOUT", c.NET2GRID.Timeout)
	}
	if c.GREX.Enabled {
		checkURL(bad, "GREX_API_BASE", c.GREX.APIBase)
		checkURL(bad, "GREX_AUTHORIZE_URL", c.GREX.AuthorizeURL)
		checkURL(bad, "GREX_TOKEN_URL", c.GREX.TokenURL)
		if c.GREX.ClientID == "" {
			bad("GREX_CLIENT_ID", "is required when G-REX is enabled")
		}
		if len(c.GREX.Accounts) == 0 {
			bad("GREX_ACCOUNTS", "needs at least one account number")
		}
		if c.GREX.PerMinute < 1 || c.GREX.PerMinute > 100 {
			bad("GREX_PER_MINUTE", "must be 1 to 100 (the registry's fair-use limit), got %d", c.GREX.PerMinute)
		}
		if c.GREX.PerHour < 1 || c.GREX.PerHour > 500 {
			bad("GREX_PER_HOUR", "must be 1 to 500 (the registry's fair-use limit), got %d", c.GREX.PerHour)
		}
		checkTimeout(bad, "GREX_TIMEOUT", c.GREX.Timeout)
	}
	if (c.NET2GRID.Enabled || c.GREX.Enabled) && c.TokenKey.IsZero() {
		bad("TOKEN_KEY", "is required when NET2GRID or G-REX is enabled: refresh tokens are stored encrypted (32 bytes, hex or base64; or GRIDSTREAM_TOKEN_KEY_FILE)")
	}
	return errors.Join(errs...)
}

func checkURL(bad func(string, string, ...any), name, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad(name, "%q is not an absolute http(s) URL", raw)
		return
	}
	if u.User != nil {
		bad(name, "must not carry credentials in the URL")
	}
}

func checkRate(bad func(string, string, ...any), name string, n int) {
	if n < 0 {
		bad(name, "must be 0 (no limit) or positive, got %d", n)
	}
}

func checkTimeout(bad func(string, string, ...any), name string, d time.Duration) {
	if d <= 0 {
		bad(name, "must be positive, got %s", d)
	}
}

// Variable is one documented environment variable.
type Variable struct{ Name, Default, Meaning string }

// Variables lists every variable with its default and meaning, for the README table and
// `connector env`.
func Variables() []Variable {
	var out []Variable
	walk(reflect.TypeOf(Config{}), Prefix, &out)
	for _, v := range (&Config{}).secretNames() {
		out = append(out, Variable{Name: v + "_FILE", Meaning: "file holding " + v + " (Kubernetes secret mount)"})
	}
	return out
}

func walk(t reflect.Type, prefix string, out *[]Variable) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(secret.Value{}) && f.Type != reflect.TypeOf(time.Duration(0)) {
			walk(f.Type, prefix+"_"+strings.ToUpper(f.Name), out)
			continue
		}
		*out = append(*out, Variable{Name: prefix + "_" + envName(f.Name), Default: f.Tag.Get("default"), Meaning: f.Tag.Get("desc")})
	}
}

var (
	wordRE    = regexp.MustCompile("([^A-Z]+|[A-Z]+[^A-Z]+|[A-Z]+)")
	acronymRE = regexp.MustCompile("([A-Z]+)([A-Z][^A-Z]+)")
)

// envName splits a field name the way envconfig's split_words does.
func envName(field string) string {
	var parts []string
	for _, w := range wordRE.FindAllString(field, -1) {
		if m := acronymRE.FindStringSubmatch(w); len(m) == 3 {
			parts = append(parts, m[1], m[2])
		} else {
			parts = append(parts, w)
		}
	}
	return strings.ToUpper(strings.Join(parts, "_"))
}

func (c *Config) secretNames() []string {
	names := make([]string, 0, 8)
	for n := range c.secrets() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
