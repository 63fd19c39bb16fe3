package sandbox

import (
	"go/build"
	"strings"
	"testing"
)

// TestSandboxImportsNothingFromTheClientSide: the fakes are written from the API notes, not
// from the client code, so that a misunderstanding of an API cannot be shared by both and
// pass every test. The sandbox may use the standard library and third-party modules only.
func TestSandboxImportsNothingFromTheClientSide(t *testing.T) {
	t.Parallel()
	const module = "github.com/gridstream/gridstream/"
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, module) {
			t.Errorf("internal/sandbox imports %s", imp)
		}
	}
}
