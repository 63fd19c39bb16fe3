// Package publish owns everything between a decoded record and an acknowledged JetStream
// message: subjects, CloudEvents headers, event ids, the stream, async publishing with
// awaited acks, the seen-store, and the NATS connection (or an embedded server).
package publish

import (
	"errors"
	"strings"
)

const hexDigits = "0123456789abcdef"

// EscapeToken turns an upstream value into one subject token: ASCII letters are
// lower-cased (upstream ids such as contract codes and account numbers are
// case-insensitive), [a-z0-9-] pass through, and every other byte, '_' included, becomes
// '_' and two hex digits. The empty string becomes "_". Upstream values can therefore
// never add a token or a wildcard ('.', '*', '>') or whitespace to a subject, and
// UnescapeToken(EscapeToken(s)) is s with its ASCII letters lower-cased, for any s.
func EscapeToken(s string) string {
	if s == "" {
		return "_"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !plain(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case plain(c):
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			b.WriteByte('_')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0x0f])
		}
	}
	return b.String()
}

func plain(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-'
}

// ErrBadToken is returned by UnescapeToken for a string EscapeToken cannot produce.
var ErrBadToken = errors.New("not an escaped subject token")

// UnescapeToken reverses EscapeToken (up to ASCII case).
func UnescapeToken(t string) (string, error) {
	if t == "_" {
		return "", nil
	}
	if t == "" {
		return "", ErrBadToken
	}
	var b strings.Builder
	b.Grow(len(t))
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case plain(c):
			b.WriteByte(c)
		case c == '_' && i+2 < len(t):
			hi, lo := unhex(t[i+1]), unhex(t[i+2])
			if hi < 0 || lo < 0 {
				return "", ErrBadToken
			}
			b.WriteByte(byte(hi<<4 | lo))
			i += 2
		default:
			return "", ErrBadToken
		}
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

// Subject builds <prefix>.<source>.<dataset>.<partition> with every part escaped.
// prefix is configuration (validated at start-up) and may itself hold dots.
func Subject(prefix, source, dataset, partition string) string {
	return prefix + "." + EscapeToken(source) + "." + EscapeToken(dataset) + "." + EscapeToken(partition)
}
