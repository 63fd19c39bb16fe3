package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/gridstream/gridstream/internal/secret"
)

// maxTokenAnswer bounds how much of a token endpoint's answer is read.
const maxTokenAnswer = 1 << 20

// maxDescription bounds the upstream text kept in a TokenError.
const maxDescription = 300

// defaultAccessLifetime is assumed when a token answer has no expires_in: short, so a token
// with an unknown lifetime is renewed soon (a 401 renews it earlier still).
const defaultAccessLifetime = 10 * time.Minute

// TokenError is an error answer from a token endpoint. It holds the HTTP status and the RFC 6749
// error and error_description fields, scrubbed of any secret that was sent, and never a token.
type TokenError struct {
	Endpoint    string // scheme, host and path of the token URL
	Status      int
	Code        string // RFC 6749 "error", e.g. invalid_grant
	Description string // RFC 6749 "error_description", shortened
}

// Error describes the failure without secrets.
func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "token endpoint %s answered %d", e.Endpoint, e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " %s", e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	return b.String()
}

// rejectsGrant reports whether the endpoint refused the grant itself (expired, revoked or
// reused refresh token, wrong credentials), as opposed to being unavailable.
func (e *TokenError) rejectsGrant() bool {
	return e.Code == "invalid_grant" || e.Status == http.StatusBadRequest || e.Status == http.StatusUnauthorized
}

// tokenAnswer is a successful token endpoint answer.
type tokenAnswer struct {
	AccessToken      secret.Value
	TokenType        string
	RefreshToken     secret.Value  // zero when the answer carried none
	ExpiresIn        time.Duration // zero when absent
	RefreshExpiresIn time.Duration // zero when absent
}

// tokenJSON is the wire form of a token endpoint answer.
type tokenJSON struct {
	AccessToken           string  `json:"access_token"`
	TokenType             string  `json:"token_type"`
	RefreshToken          string  `json:"refresh_token"`
	ExpiresIn             seconds `json:"expires_in"`
	RefreshTokenExpiresIn seconds `json:"refresh_token_expires_in"`
	Error                 string  `json:"error"`
	ErrorDescription      string  `json:"error_description"`
	ChallengeName         string  `json:"challenge_name"`
}

// seconds reads a lifetime in seconds given as a JSON number or a numeric string.
type seconds int64

func (s *seconds) UnmarshalJSON(b []byte) error {
	str := strings.Trim(string(b), `"`)
	if str == "" || str == "null" {
		*s = 0
		return nil
	}
	f, err := strconv.ParseFloat(str, 64)
	if err != nil || f < 0 || f > 1e10 {
		return errors.New("lifetime is not a number of seconds")
	}
	*s = seconds(f)
	return nil
}

// sensitiveForm lists the form fields whose values must never appear in an error.
var sensitiveForm = []string{"refresh_token", "client_secret", "password", "code", "code_verifier", "username"}

// tokenEndpoint posts token requests to one URL.
type tokenEndpoint struct {
	URL    string
	Client *http.Client
}

// post sends form to the endpoint and parses the answer. Errors are *TokenError for an error
// answer, ErrLoginNeedsPerson for a multi-factor challenge, or a transport error.
func (te tokenEndpoint) post(ctx context.Context, form url.Values) (*tokenAnswer, error) {
	label := endpointLabel(te.URL)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, te.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("token request to %s: %w", label, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	client := te.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("token request to %s: %w", label, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenAnswer))
	if err != nil {
		return nil, fmt.Errorf("token request to %s: read answer: %w", label, err)
	}
	var tj tokenJSON
	jsonErr := json.Unmarshal(bytes.TrimSpace(body), &tj)
	failed := resp.StatusCode < 200 || resp.StatusCode > 299
	if failed || tj.Error != "" {
		var secrets []string
		for _, k := range sensitiveForm {
			secrets = append(secrets, form.Get(k))
		}
		secrets = append(secrets, tj.AccessToken, tj.RefreshToken)
		return nil, &TokenError{
			Endpoint:    label,
			Status:      resp.StatusCode,
			Code:        clean(tj.Error, 64, secrets),
			Description: clean(tj.ErrorDescription, maxDescription, secrets),
		}
	}
	if jsonErr != nil {
		// The error of encoding/json quotes no input, but keep it generic anyway.
		return nil, fmt.Errorf("token request to %s: answer %d is not a JSON token answer", label, resp.StatusCode)
	}
	if tj.ChallengeName != "" {
		return nil, fmt.Errorf("token request to %s: challenge %q: %w", label,
			clean(tj.ChallengeName, 64, []string{tj.AccessToken, tj.RefreshToken}), ErrLoginNeedsPerson)
	}
	if tj.AccessToken == "" {
		return nil, fmt.Errorf("token request to %s: answer has no access_token", label)
	}
	return &tokenAnswer{
		AccessToken:      secret.New(tj.AccessToken),
		TokenType:        tj.TokenType,
		RefreshToken:     secret.New(tj.RefreshToken),
		ExpiresIn:        time.Duration(tj.ExpiresIn) * time.Second,
		RefreshExpiresIn: time.Duration(tj.RefreshTokenExpiresIn) * time.Second,
	}, nil
}

// endpointLabel is the token URL without user info, query or fragment.
func endpointLabel(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable token URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}

// clean makes upstream text safe to keep in an error: every secret removed, control characters
// dropped, length bounded.
func clean(s string, limit int, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "…"
	}
	return s
}
