package publish

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// Event header names: CloudEvents 1.0 binary content mode over NATS, as the CloudEvents
// Go SDK's NATS and JetStream bindings read them, plus the JetStream dedupe id and W3C
// trace context.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderSource      = "ce-source"
	HeaderType        = "ce-type"
	HeaderSubject     = "ce-subject"
	HeaderTime        = "ce-time"
	// HeaderChange is a CloudEvents extension: "created" for the first event of an entity,
	// "updated" for a later revision (as far as this deployment's seen-store knows).
	HeaderChange      = "ce-change"
	HeaderContentType = "Content-Type"
	HeaderMsgID       = nats.MsgIdHdr
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Change kinds carried in HeaderChange.
const (
	ChangeCreated = "created"
	ChangeUpdated = "updated"
)

// Event is one record revision ready to publish.
type Event struct {
	Subject string
	// ID is the deterministic event id (ce-id and Nats-Msg-Id).
	ID string
	// Source and Dataset name the upstream; Partition the job's partition.
	Source, Dataset, Partition string
	// EntityKey is the record's key (ce-subject).
	EntityKey string
	// Time is the record's own time (ce-time).
	Time   time.Time
	Change string
	Body   []byte
}

// ContentHash is the hash of a record body that the seen-store compares. It is not a
// security boundary (upstream data is not adversarial against us here); 64 bits keep the
// seen-store small and the unchanged-record path free of allocations.
func ContentHash(body []byte) uint64 { return xxhash.Sum64(body) }

// KeyHash is the hash under which the seen-store remembers an entity key within a job.
func KeyHash(key string) uint64 { return xxhash.Sum64String(key) }

// EventID is the deterministic id of one revision of one entity: a replay of the same
// revision gets the same id (and is dropped by JetStream inside its duplicate window),
// a changed record gets a new one.
func EventID(source, dataset, partition, key string, contentHash uint64) string {
	h := sha256.New()
	for _, part := range []string{source, dataset, partition, key} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	var ch [8]byte
	for i := range ch {
		ch[i] = byte(contentHash >> (56 - 8*i))
	}
	h.Write(ch[:])
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:16])
}

// EventType is the CloudEvents type of a dataset's events.
func EventType(source, dataset string) string { return "io.gridstream." + source + "." + dataset }

// EventSource is the CloudEvents source of a job's events (a URI reference).
func EventSource(source, dataset, partition string) string {
	return "/gridstream/" + EscapeToken(source) + "/" + EscapeToken(dataset) + "/" + EscapeToken(partition)
}

// Msg builds the NATS message for e, with the trace context of ctx.
func (e *Event) Msg(ctx context.Context) *nats.Msg {
	h := nats.Header{}
	h[HeaderSpecVersion] = []string{"1.0"}
	h[HeaderID] = []string{e.ID}
	h[HeaderMsgID] = []string{e.ID}
	h[HeaderSource] = []string{EventSource(e.Source, e.Dataset, e.Partition)}
	h[HeaderType] = []string{EventType(e.Source, e.Dataset)}
	h[HeaderSubject] = []string{e.EntityKey}
	h[HeaderTime] = []string{e.Time.UTC().Format(time.RFC3339Nano)}
	h[HeaderContentType] = []string{"application/json"}
	if e.Change != "" {
		h[HeaderChange] = []string{e.Change}
	}
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier(h))
	return &nats.Msg{Subject: e.Subject, Header: h, Data: e.Body}
}

// headerCarrier writes trace context into NATS headers under their exact lower-case W3C
// names: NATS headers are case-sensitive and http.Header would canonicalise them.
type headerCarrier nats.Header

var _ propagation.TextMapCarrier = headerCarrier{}

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// ExtractTrace returns ctx carrying the trace context found in an event's headers, so a
// consumer (or a test) can continue the trace.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier(h))
}
