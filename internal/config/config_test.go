package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validINGRID sets the minimum for a valid configuration.
func validINGRID(t *testing.T) {
	t.Setenv("GRIDSTREAM_INGRID_ENABLED", "true")
	t.Setenv("GRIDSTREAM_INGRID_CLIENT_ID", "id")
	t.Setenv("GRIDSTREAM_INGRID_CLIENT_SECRET", "s3cret-value")
	t.Setenv("GRIDSTREAM_INGRID_CONTRACTS", "ABC123,DEF456")
}

func TestDefaultsWithOneSourceAreValid(t *testing.T) {
	validINGRID(t)
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Stream.SubjectPrefix != "energy" || c.Stream.Name != "ENERGY" || len(c.INGRID.Contracts) != 2 {
		t.Fatalf("defaults not applied: %+v", c.Stream)
	}
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	cases := []struct{ name, env, value, want string }{
		{"bad url", "GRIDSTREAM_INGRID_TOKEN_URL", "not a url", "GRIDSTREAM_INGRID_TOKEN_URL"},
		{"bad prefix", "GRIDSTREAM_STREAM_SUBJECT_PREFIX", "energy.>", "GRIDSTREAM_STREAM_SUBJECT_PREFIX"},
		{"bad storage", "GRIDSTREAM_STREAM_STORAGE", "disk", "GRIDSTREAM_STREAM_STORAGE"},
		{"bad level", "GRIDSTREAM_LOG_LEVEL", "loud", "GRIDSTREAM_LOG_LEVEL"},
		{"grex over fair use", "GRIDSTREAM_GREX_PER_MINUTE", "150", "GRIDSTREAM_GREX_PER_MINUTE"},
		{"missing secret", "GRIDSTREAM_INGRID_CLIENT_SECRET", "", "GRIDSTREAM_INGRID_CLIENT_SECRET"},
		{"unparsable int", "GRIDSTREAM_WORKERS", "many", "GRIDSTREAM_WORKERS"},
		{"unparsable duration", "GRIDSTREAM_STREAM_MAX_AGE", "forever", "GRIDSTREAM_STREAM_MAX_AGE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			validINGRID(t)
			if tc.env == "GRIDSTREAM_GREX_PER_MINUTE" {
				t.Setenv("GRIDSTREAM_GREX_ENABLED", "true")
				t.Setenv("GRIDSTREAM_GREX_ACCOUNTS", "FR0001")
			}
			t.Setenv(tc.env, tc.value)
			c, err := Load()
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret-value") {
				t.Fatalf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestNoSourceEnabledIsAnError(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "GRIDSTREAM_INGRID_ENABLED") {
		t.Fatalf("err = %v", err)
	}
}

// envconfig falls back to an unprefixed name for explicitly named fields; our fields must
// never pick up a generic variable such as USER or TOKEN from the shell.
func TestUnprefixedVariablesAreIgnored(t *testing.T) {
	t.Setenv("USER", "root")
	t.Setenv("TOKEN", "leak")
	t.Setenv("URL", "nats://elsewhere:4222")
	t.Setenv("PASSWORD", "x")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.User != "" || !c.NATS.Token.IsZero() || c.NATS.URL != "" || !c.NATS.Password.IsZero() {
		t.Fatalf("unprefixed variables were read: %+v", c.NATS)
	}
}

func TestSecretFromFile(t *testing.T) {
	validINGRID(t)
	t.Setenv("GRIDSTREAM_INGRID_CLIENT_SECRET", "")
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GRIDSTREAM_INGRID_CLIENT_SECRET_FILE", path)
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.INGRID.ClientSecret.Reveal() != "from-file" {
		t.Fatalf("secret from file = %q", c.INGRID.ClientSecret.Reveal())
	}
	t.Setenv("GRIDSTREAM_INGRID_CLIENT_SECRET", "both")
	if _, err := Load(); err == nil || !strings.Contains(err.Error(), "GRIDSTREAM_INGRID_CLIENT_SECRET_FILE") {
		t.Fatalf("both set: err = %v", err)
	}
}

func TestVariablesMatchEnvconfigNames(t *testing.T) {
	names := map[string]bool{}
	for _, v := range Variables() {
		names[v.Name] = true
	}
	for _, want := range []string{"GRIDSTREAM_NATS_URL", "GRIDSTREAM_INGRID_TOKEN_URL", "GRIDSTREAM_HTTP_ADDR", "GRIDSTREAM_NATS_CA_FILE",
		"GRIDSTREAM_STREAM_DUPLICATE_WINDOW", "GRIDSTREAM_GREX_REDIRECT_URI", "GRIDSTREAM_INGRID_CLIENT_SECRET_FILE"} {
		if !names[want] {
			t.Errorf("Variables() lacks %s", want)
		}
	}
	// Every listed variable really is read: setting it to garbage of its type changes Load.
	t.Setenv("GRIDSTREAM_NATS_CA_FILE", "/x")
	t.Setenv("GRIDSTREAM_STREAM_DUPLICATE_WINDOW", "1m")
	c, _ := Load()
	if c.NATS.CAFile != "/x" || c.Stream.DuplicateWindow.Minutes() != 1 {
		t.Fatal("documented names are not the names envconfig reads")
	}
}
