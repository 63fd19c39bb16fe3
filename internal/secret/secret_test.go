package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	t.Parallel()
	const raw = "hunter2-token"
	v := New(raw)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "secret", v, "nested", struct{ S Value }{v})
	js, _ := json.Marshal(struct{ S Value }{v})
	outputs := []string{
		fmt.Sprint(v), fmt.Sprintf("%s %v %q %#v %x %+v", v, v, v, v, v, struct{ S Value }{v}),
		fmt.Errorf("wrapped: %v", v).Error(), logs.String(), string(js),
	}
	for _, out := range outputs {
		if strings.Contains(out, raw) {
			t.Errorf("secret leaked in %q", out)
		}
	}
	if v.Reveal() != raw {
		t.Fatal("Reveal lost the value")
	}
	var d Value
	if err := d.Decode(raw); err != nil || d.Reveal() != raw {
		t.Fatal("Decode")
	}
}
