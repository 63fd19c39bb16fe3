package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestLoggerAddsTraceIDsWhenASpanIsActive(t *testing.T) {
	t.Parallel()
	tel := setupTest(t, Options{})
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := NewLogger(&buf, "info", format)
			if err != nil {
				t.Fatal(err)
			}
			ctx, span := tel.Tracer("test").Start(context.Background(), "poll")
			defer span.End()
			log.With("job", "grex/x").InfoContext(ctx, "polled")
			out := buf.String()
			for _, want := range []string{span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String(), "trace_id", "span_id", "grex/x"} {
				if !strings.Contains(out, want) {
					t.Errorf("log line %q lacks %q", out, want)
				}
			}
			if format == "json" {
				var rec map[string]any
				if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
					t.Fatalf("not json: %v", err)
				}
				if rec["trace_id"] != span.SpanContext().TraceID().String() {
					t.Errorf("trace_id = %v", rec["trace_id"])
				}
			}
		})
	}
}

func TestLoggerOmitsTraceIDsWithoutASpan(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.DebugContext(context.Background(), "no span")
	if strings.Contains(buf.String(), "trace_id") {
		t.Errorf("trace_id without a span: %s", buf.String())
	}
}

func TestNewLoggerValidatesLevelAndFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, level, format string
		wantErr             bool
		debugShown          bool
	}{
		{name: "defaults", level: "", format: "", debugShown: false},
		{name: "debug text", level: "debug", format: "text", debugShown: true},
		{name: "upper case", level: "WARN", format: "JSON"},
		{name: "bad level", level: "loud", format: "json", wantErr: true},
		{name: "bad format", level: "info", format: "xml", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := NewLogger(&buf, tc.level, tc.format)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			log.Debug("dbg")
			if got := strings.Contains(buf.String(), "dbg"); got != tc.debugShown {
				t.Errorf("debug shown = %v, want %v", got, tc.debugShown)
			}
		})
	}
}
