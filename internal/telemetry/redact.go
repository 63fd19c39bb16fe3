package telemetry

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"unicode/utf8"
)

// emailPattern finds e-mail-like substrings (NET2GRID users log in with e-mail addresses, and a
// partition or subject may be one).
var emailPattern = regexp.MustCompile(`[^\s/@<>"'()\[\],;:]+@[^\s/@<>"'()\[\],;:]+`)

// maxLabelLen bounds a label value, so an unexpected upstream string cannot bloat the scrape.
const maxLabelLen = 128

// RedactEmails replaces every e-mail-like substring of s with "h-" and the first 12 hex digits
// of its SHA-256, a stable pseudonym an operator can recompute from the address. Telemetry
// applies it to every label value and to the partitions, subjects and errors on the status page.
func RedactEmails(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return emailPattern.ReplaceAllStringFunc(s, func(m string) string {
		sum := sha256.Sum256([]byte(strings.ToLower(m)))
		return "h-" + hex.EncodeToString(sum[:6])
	})
}

// labelValue makes s safe as a metric label value: e-mails hashed, invalid UTF-8 dropped, length capped.
func labelValue(s string) string {
	s = RedactEmails(s)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "")
	}
	if len(s) > maxLabelLen {
		s = s[:maxLabelLen]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
