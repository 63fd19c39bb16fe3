// Package secret holds values that must never reach a log line, error, span, metric or
// event: passwords, client secrets, access and refresh tokens, encryption keys.
//
// A Value prints as "[REDACTED]" through fmt (%v, %s, %q, %#v), log/slog and encoding/json,
// so the only way to read it is an explicit call to Reveal at the point of use.
package secret

import (
	"fmt"
	"log/slog"
)

const redacted = "[REDACTED]"

// Value is a secret string. The zero value is empty.
type Value struct{ s string }

// New wraps s.
func New(s string) Value { return Value{s: s} }

// Reveal returns the secret itself; call it only where the secret leaves the process
// (an HTTP header, a token request body, a cipher).
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.s == "" }

// String redacts.
func (v Value) String() string {
	if v.s == "" {
		return ""
	}
	return redacted
}

// GoString redacts %#v as well.
func (v Value) GoString() string { return v.String() }

// Format redacts every verb, including %q and %x.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(v.String())) }

// LogValue redacts in log/slog.
func (v Value) LogValue() slog.Value { return slog.StringValue(v.String()) }

// MarshalJSON redacts in encoding/json.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + v.String() + `"`), nil }

// MarshalText redacts in text encoders.
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Decode lets envconfig fill a Value from an environment variable.
func (v *Value) Decode(s string) error {
	v.s = s
	return nil
}
