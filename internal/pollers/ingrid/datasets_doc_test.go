package ingrid

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsDescribeEveryDataset keeps docs/sources/ingrid.md in step with Datasets: each
// dataset has a table row with its subject and an example event body.
func TestDocsDescribeEveryDataset(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "sources", "ingrid.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range Datasets {
		row := "| `" + d.Name + "` | `energy.ingrid." + d.Name + ".<contract>` |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("no table row for %s", d.Name)
		}
		if !strings.Contains(string(doc), "`"+d.Name+"` (`ce-subject: ") {
			t.Errorf("no example event body for %s", d.Name)
		}
	}
}
