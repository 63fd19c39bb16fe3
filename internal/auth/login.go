package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/gridstream/gridstream/internal/secret"
)

// BootstrapPassword logs a NET2GRID end user in once with the password grant and saves the
// refresh token under key in store, replacing whatever was there (unless the stored value
// cannot be decrypted: then nothing is written). The password is sent once and kept nowhere.
// cfg supplies the token URL, client id and secret, HTTP client, refresh lifetime and clock;
// its Store and Key are not used. A multi-factor challenge gives ErrLoginNeedsPerson.
func BootstrapPassword(ctx context.Context, cfg RotatingConfig, username string, password secret.Value, store Store, key string) error {
	if cfg.TokenURL == "" || cfg.ClientID == "" || username == "" || password.IsZero() || store == nil || key == "" {
		return errors.New("auth: password bootstrap needs token URL, client id, username, password, store and key")
	}
	cfg.defaults()
	ans, err := cfg.endpoint().post(ctx, cfg.form(url.Values{
		"grant_type": {"password"},
		"username":   {username},
		"password":   {password.Reveal()},
	}))
	if err != nil {
		return fmt.Errorf("auth %s password login for %s: %w", cfg.Name, SubjectOf(username), err)
	}
	if ans.RefreshToken.IsZero() {
		return fmt.Errorf("auth %s password login for %s: answer has no refresh token", cfg.Name, SubjectOf(username))
	}
	st := cfg.storedFrom(ans, Stored{}, cfg.Clock.now())
	if err := saveLogin(ctx, store, key, st); err != nil {
		return fmt.Errorf("auth %s password login for %s: %w", cfg.Name, SubjectOf(username), err)
	}
	cfg.Logger.Info("password login saved a refresh token", "source", cfg.Name, "subject", SubjectOf(username),
		"refresh_expiry", st.RefreshExpiry)
	return nil
}

// saveLogin writes the tokens of a fresh login over whatever is stored, with compare-and-swap
// so a concurrent refresh sees the change. Stored tokens that cannot be read (ErrDecrypt) are
// never overwritten.
func saveLogin(ctx context.Context, store Store, key string, st Stored) error {
	for range maxConflicts {
		_, rev, err := store.Load(ctx, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("read stored tokens before saving the login: %w", err)
		}
		_, err = store.Save(ctx, key, st, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("save login tokens: %w", err)
		}
		return nil
	}
	return fmt.Errorf("save login tokens: %w", ErrConflict)
}

// PKCEConfig configures an interactive authorization-code login with PKCE (G-REX on Azure AD
// B2C). The embedded RotatingConfig is the one the refresh source uses afterwards: token URL,
// client id, scopes, redirect URL, store and key.
type PKCEConfig struct {
	AuthURL string // the authorize endpoint
	RotatingConfig
}

// PKCELogin is one interactive login: the operator opens AuthURL, signs in (with multi-factor),
// and hands back the redirect URL or the code, which Exchange turns into stored tokens.
type PKCELogin struct {
	cfg      PKCEConfig
	verifier string
	state    string
	authURL  string
}

// NewPKCELogin prepares a login with a fresh code verifier (S256 challenge) and state.
func NewPKCELogin(cfg PKCEConfig) (*PKCELogin, error) {
	if cfg.AuthURL == "" || cfg.TokenURL == "" || cfg.ClientID == "" || cfg.RedirectURL == "" || cfg.Store == nil || cfg.Key == "" {
		return nil, errors.New("auth: PKCE login needs AuthURL, TokenURL, ClientID, RedirectURL, Store and Key")
	}
	cfg.defaults()
	l := &PKCELogin{cfg: cfg, verifier: oauth2.GenerateVerifier(), state: rand.Text()}
	oc := oauth2.Config{
		ClientID:    cfg.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL},
		RedirectURL: cfg.RedirectURL,
		Scopes:      cfg.Scopes,
	}
	l.authURL = oc.AuthCodeURL(l.state, oauth2.S256ChallengeOption(l.verifier))
	return l, nil
}

// AuthURL is the URL the operator opens in a browser. It holds the code challenge, not the
// verifier, so it may be printed.
func (l *PKCELogin) AuthURL() string { return l.authURL }

// State is the random state the redirect must carry back.
func (l *PKCELogin) State() string { return l.state }

// Exchange trades an authorization code for tokens (authorization_code grant with the code
// verifier) and saves them under the configured key, replacing what was stored.
func (l *PKCELogin) Exchange(ctx context.Context, code string) error {
	if code == "" {
		return errors.New("auth: empty authorization code")
	}
	cfg := l.cfg.RotatingConfig
	ans, err := cfg.endpoint().post(ctx, cfg.form(url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"code_verifier": {l.verifier},
	}))
	if err != nil {
		return fmt.Errorf("auth %s login code exchange: %w", cfg.Name, err)
	}
	if ans.RefreshToken.IsZero() {
		return fmt.Errorf("auth %s login code exchange: answer has no refresh token (is offline_access in the scopes?)", cfg.Name)
	}
	st := cfg.storedFrom(ans, Stored{}, cfg.Clock.now())
	if err := saveLogin(ctx, cfg.Store, cfg.Key, st); err != nil {
		return fmt.Errorf("auth %s login: %w", cfg.Name, err)
	}
	cfg.Logger.Info("interactive login saved a refresh token", "source", cfg.Name, "subject", cfg.Subject,
		"refresh_expiry", st.RefreshExpiry)
	return nil
}

// maxCodeLen bounds an authorization code; B2C codes are a few hundred to ~2,000 characters.
const maxCodeLen = 8192

// ParseRedirect takes what the operator pasted after logging in, the full redirect URL (or its
// query) or the bare code, and returns the authorization code. A redirect must carry wantState
// (when wantState is set); an error redirect (error=, error_description=) becomes an error that
// says what the authorization server refused. Errors never quote the code.
func ParseRedirect(input, wantState string) (string, error) {
	in := strings.TrimSpace(input)
	if in == "" {
		return "", errors.New("auth: nothing pasted: give the redirect URL or the code")
	}
	if len(in) > maxCodeLen {
		return "", errors.New("auth: pasted text is too long for a redirect URL or code")
	}
	if !strings.ContainsAny(in, "?=&#:/") {
		if !isCodeText(in) {
			return "", errors.New("auth: pasted text is neither a redirect URL nor a code")
		}
		return in, nil
	}
	q, err := redirectParams(in)
	if err != nil {
		return "", err
	}
	if e := q.Get("error"); e != "" {
		msg := clean(e, 64, nil)
		if d := q.Get("error_description"); d != "" {
			msg += ": " + clean(d, maxDescription, nil)
		}
		return "", fmt.Errorf("auth: the login was refused: %s", msg)
	}
	code := q.Get("code")
	if code == "" {
		return "", errors.New("auth: the redirect URL has no code")
	}
	if !isCodeText(code) {
		return "", errors.New("auth: the code in the redirect URL has unexpected characters")
	}
	if wantState != "" && q.Get("state") != wantState {
		return "", errors.New("auth: the redirect's state does not match this login (a stale or foreign redirect?)")
	}
	return code, nil
}

// redirectParams returns the query of a redirect URL, or its fragment when the query is empty
// (response_mode=fragment), or the pasted text itself read as a query.
func redirectParams(in string) (url.Values, error) {
	raw := in
	if u, err := url.Parse(in); err == nil && (u.Scheme != "" || strings.HasPrefix(in, "/")) {
		raw = u.RawQuery
		if raw == "" {
			raw = u.EscapedFragment()
		}
	} else {
		raw = strings.TrimPrefix(strings.TrimPrefix(in, "?"), "#")
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errors.New("auth: the redirect URL's query cannot be parsed")
	}
	return q, nil
}

// isCodeText reports whether s looks like an authorization code: URL-safe characters only.
func isCodeText(s string) bool {
	if s == "" || len(s) > maxCodeLen {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-', r == '_', r == '.', r == '~', r == '+', r == '/', r == '=':
		default:
			return false
		}
	}
	return true
}
