package publish

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
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
	HeaderChange = "ce-change"
	// HeaderContentType is lower-case as the CloudEvents NATS binding specifies it (NATS
	// headers are case-sensitive; the Go SDK reads only "content-type").
	HeaderContentType = "content-type"
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

// EventID is the deterministic id of one revision of one entity: the hash of (source,
// dataset, partition, key, the content hash of the revision it replaces, its own content
// hash). A replay of the same revision gets the same id and is dropped by JetStream inside
// its duplicate window. The previous content hash is part of the id so that a record that
// changes back (A → B → A) gets a new id for its third revision instead of A's old one,
// which JetStream would drop as a duplicate. prevHash is 0 for a new entity.
func EventID(source, dataset, partition, key string, prevHash, contentHash uint64) string {
	// sha256 of len(part) ":" part for each part, then both hashes big-endian; built in
	// one buffer (on the stack for usual sizes) and hashed at once.
	var stack [256]byte
	b := stack[:0]
	for _, part := range [...]string{source, dataset, partition, key} {
		b = strconv.AppendInt(b, int64(len(part)), 10)
		b = append(b, ':')
		b = append(b, part...)
	}
	b = binary.BigEndian.AppendUint64(b, prevHash)
	b = binary.BigEndian.AppendUint64(b, contentHash)
	sum := sha256.Sum256(b)
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
	h := make(nats.Header, 12) // every header below, and room for trace context
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

// ValidJSON reports whether b is one JSON value, with the same answer as json.Valid for
// every input (including its nesting limit), several times faster: the fetch loop checks
// every body it publishes.
func ValidJSON(b []byte) bool {
	var open [64]byte // '{' or '[' of each open container; deeper input goes to json.Valid
	depth := 0
	i := skipJSONSpace(b, 0)
	for {
		// A value starts at i.
		if i >= len(b) {
			return false
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if depth == len(open) {
				return json.Valid(b)
			}
			open[depth] = c
			depth++
			i = skipJSONSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' or ']'
				depth--
				i++
				break
			}
			if c == '{' {
				if i = jsonKey(b, i); i < 0 {
					return false
				}
			}
			continue
		case c == '"':
			i = jsonString(b, i)
		case c == '-' || (c >= '0' && c <= '9'):
			i = jsonNumber(b, i)
		case c == 't':
			i = jsonLiteral(b, i, "true")
		case c == 'f':
			i = jsonLiteral(b, i, "false")
		case c == 'n':
			i = jsonLiteral(b, i, "null")
		default:
			return false
		}
		if i < 0 {
			return false
		}
		// After a value: close containers until a comma starts the next value.
		for next := false; !next; {
			i = skipJSONSpace(b, i)
			if depth == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			switch top := open[depth-1]; {
			case b[i] == ',':
				i = skipJSONSpace(b, i+1)
				if top == '{' {
					if i = jsonKey(b, i); i < 0 {
						return false
					}
				}
				next = true
			case b[i] == top+2:
				depth--
				i++
			default:
				return false
			}
		}
	}
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// jsonKey reads `"key" :` at i and returns the index after the colon and its spaces.
func jsonKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = jsonString(b, i); i < 0 {
		return -1
	}
	if i = skipJSONSpace(b, i); i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipJSONSpace(b, i+1)
}

// jsonString returns the index after the string starting at b[i] == '"', or -1.
func jsonString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// jsonNumber returns the index after the number starting at i, or -1.
func jsonNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = jsonDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if j := jsonDigits(b, i+1); j > i+1 {
			i = j
		} else {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if j := jsonDigits(b, i); j > i {
			i = j
		} else {
			return -1
		}
	}
	return i
}

func jsonDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

func jsonLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}
