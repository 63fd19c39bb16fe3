package upstream

import (
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

const redacted = "[REDACTED]"

// sensitiveParam reports whether a query parameter may carry a credential, so its
// value never reaches an error, a log line or a span.
func sensitiveParam(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "code", "key", "sig", "signature", "auth", "authorization", "session", "sessionid", "assertion", "client_assertion":
		return true
	}
	for _, s := range []string{"token", "secret", "password", "passwd", "apikey", "api_key", "api-key", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// redactURL returns u without user info and with sensitive query values redacted,
// and whether anything was redacted.
func redactURL(u *url.URL) (*url.URL, bool) {
	if u == nil {
		return nil, false
	}
	out := *u
	changed := out.User != nil
	out.User = nil
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil { // unparsable: keep none of it
			out.RawQuery = redacted
			return &out, true
		}
		for k, vs := range q {
			if sensitiveParam(k) {
				for i := range vs {
					vs[i] = redacted
				}
				changed = true
			}
		}
		if changed {
			out.RawQuery = q.Encode()
		}
	}
	return &out, changed
}

// safeURL is redactURL as a string for errors and logs.
func safeURL(u *url.URL) string {
	r, _ := redactURL(u)
	if r == nil {
		return ""
	}
	return r.String()
}

var (
	reBearer = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}`)
	reJWT    = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(\.[A-Za-z0-9_-]*)?`)
	reKV     = regexp.MustCompile(`(?i)("?[a-z_-]*(token|secret|password|passwd|api_?key|assertion)"?\s*[:=]\s*"?)[^"&\s,;}<]+`)
	reTag    = regexp.MustCompile(`<[^>]*>`)
)

// snippetLen is how much of an error body a StatusError keeps.
const snippetLen = 200

// snippet turns the start of an error body into a short, printable, token-free string.
func snippet(body []byte) string {
	if len(body) > 4*snippetLen {
		body = body[:4*snippetLen]
	}
	s := strings.ToValidUTF8(string(body), "")
	s = reTag.ReplaceAllString(s, " ")
	s = reBearer.ReplaceAllString(s, "${1} "+redacted)
	s = reJWT.ReplaceAllString(s, redacted)
	s = reKV.ReplaceAllString(s, "${1}"+redacted)
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }), " ")
	if utf8.RuneCountInString(s) > snippetLen {
		s = string([]rune(s)[:snippetLen]) + "…"
	}
	return s
}
