package publish

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEscapeTokenCannotChangeSubjectShape(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, in, want string }{
		{"plain", "abc123", "abc123"},
		{"upper", "ABC123", "abc123"},
		{"dot", "a.b", "a_2eb"},
		{"star", "*", "_2a"},
		{"gt", ">", "_3e"},
		{"space", "a b", "a_20b"},
		{"tab", "a\tb", "a_09b"},
		{"underscore", "a_b", "a_5fb"},
		{"unicode", "é", "_c3_a9"},
		{"empty", "", "_"},
		{"dash", "u-42", "u-42"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := EscapeToken(tc.in)
			if got != tc.want {
				t.Fatalf("EscapeToken(%q) = %q, want %q", tc.in, got, tc.want)
			}
			back, err := UnescapeToken(got)
			if err != nil || back != strings.ToLower(tc.in) {
				t.Fatalf("UnescapeToken(%q) = %q, %v", got, back, err)
			}
			subj := Subject("energy", "ingrid", "operational-notices", tc.in)
			if n := strings.Count(subj, "."); n != 3 {
				t.Fatalf("subject %q has %d dots", subj, n)
			}
		})
	}
}

func TestUnescapeTokenRejectsGarbage(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "a_", "a_4", "a_zz", "A", "a.b", "a*"} {
		if _, err := UnescapeToken(in); err == nil {
			t.Errorf("UnescapeToken(%q) accepted", in)
		}
	}
}

func FuzzEscapeToken(f *testing.F) {
	for _, s := range []string{"", "ABC123", "a.b*c>d e", "é", "_5f", "\xff\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EscapeToken(s)
		for i := 0; i < len(tok); i++ {
			c := tok[i]
			if !(plain(c) || c == '_') {
				t.Fatalf("EscapeToken(%q) = %q holds %q", s, tok, c)
			}
		}
		back, err := UnescapeToken(tok)
		if err != nil {
			t.Fatalf("UnescapeToken(EscapeToken(%q)): %v", s, err)
		}
		if back != lowerASCII(s) {
			t.Fatalf("round trip %q -> %q -> %q", s, tok, back)
		}
		_ = utf8.ValidString(s)
	})
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
