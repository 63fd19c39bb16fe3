package ingrid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

// ErrMalformed marks an INGRID answer or record that does not have the assumed shape.
var ErrMalformed = errors.New("ingrid: malformed answer")

// pageRecords returns the raw records of a data answer. It is the one place that knows the
// envelope, which no public document describes: an object whose "data" member is the array
// of records (what the sandbox serves), or a bare array of records.
func pageRecords(body []byte) ([]json.RawMessage, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrMalformed)
	}
	var recs []json.RawMessage
	switch body[0] {
	case '[':
		if err := strictUnmarshal(body, &recs); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	case '{':
		var env struct {
			Data *[]json.RawMessage `json:"data"`
		}
		if err := strictUnmarshal(body, &env); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if env.Data == nil {
			return nil, fmt.Errorf("%w: no \"data\" array", ErrMalformed)
		}
		recs = *env.Data
	default:
		return nil, fmt.Errorf("%w: not a JSON object or array", ErrMalformed)
	}
	return recs, nil
}

// strictUnmarshal decodes exactly one JSON value (nothing after it).
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// fields is one record decoded with numbers kept as written.
type fields map[string]any

// keyFunc finds a record's entity key and time.
type keyFunc func(f fields) (key string, t time.Time, err error)

// decodeWith decodes a page and keys each record with kf. Each Body is the record
// re-encoded canonically (keys sorted, numbers as written, no insignificant space), so the
// content hash changes only when a value does.
func decodeWith(body []byte, kf keyFunc) ([]pollers.Record, error) {
	raws, err := pageRecords(body)
	if err != nil {
		return nil, err
	}
	out := make([]pollers.Record, 0, len(raws))
	for i, raw := range raws {
		f, canon, err := canonical(raw)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		key, t, err := kf(f)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out = append(out, pollers.Record{Key: key, Time: t, Body: canon})
	}
	return out, nil
}

// canonical decodes one record object and re-encodes it canonically.
func canonical(raw json.RawMessage) (fields, json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var f fields
	if err := dec.Decode(&f); err != nil || f == nil {
		return nil, nil, fmt.Errorf("%w: record is not a JSON object", ErrMalformed)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		return nil, nil, fmt.Errorf("%w: record: %w", ErrMalformed, err)
	}
	return f, bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// str returns the non-empty string field name.
func (f fields) str(name string) (string, error) {
	s, ok := f[name].(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%w: %q missing or not a non-empty string", ErrMalformed, name)
	}
	return s, nil
}

// instant returns the RFC 3339 date-time field name.
func (f fields) instant(name string) (time.Time, error) {
	s, err := f.str(name)
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %q is not an RFC 3339 date-time: %q", ErrMalformed, name, truncate(s))
	}
	return t, nil
}

// noticeKey keys a notice by its id at the time of its last change.
func noticeKey(f fields) (string, time.Time, error) {
	id, err := f.str("noticeId")
	if err != nil {
		return "", time.Time{}, err
	}
	t, err := f.instant("updatedAt")
	if err != nil {
		if t, err = f.instant("publishedAt"); err != nil {
			return "", time.Time{}, err
		}
	}
	return id, t, nil
}

// dailyKey keys a daily record by its gas day, at the gas day's start.
func dailyKey(f fields) (string, time.Time, error) {
	s, err := f.str("gasDay")
	if err != nil {
		return "", time.Time{}, err
	}
	t, err := ParseGasDay(s)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return FormatGasDay(t), t, nil
}

// hourlyKey keys an hourly record by its hour start in UTC.
func hourlyKey(f fields) (string, time.Time, error) {
	t, err := f.instant("hourStart")
	if err != nil {
		return "", time.Time{}, err
	}
	t = t.UTC()
	return t.Format(time.RFC3339), t, nil
}

// referenceKey keys a reference item by its id field, at its last update (or the start of its
// validity when the upstream gives no update time).
func referenceKey(idField string) keyFunc {
	return func(f fields) (string, time.Time, error) {
		id, err := f.str(idField)
		if err != nil {
			return "", time.Time{}, err
		}
		t, err := f.instant("updatedAt")
		if err != nil {
			s, verr := f.str("validFrom")
			if verr != nil {
				return "", time.Time{}, err
			}
			if t, verr = ParseGasDay(s); verr != nil {
				return "", time.Time{}, err
			}
		}
		return id, t, nil
	}
}

// DecodeNotices decodes a page of notices (operational, maintenance, confirmation), keyed by
// noticeId.
func DecodeNotices(body []byte) ([]pollers.Record, error) { return decodeWith(body, noticeKey) }

// DecodeDaily decodes a page of daily records, keyed by gas day.
func DecodeDaily(body []byte) ([]pollers.Record, error) { return decodeWith(body, dailyKey) }

// DecodeHourly decodes a page of hourly records, keyed by hour start in UTC.
func DecodeHourly(body []byte) ([]pollers.Record, error) { return decodeWith(body, hourlyKey) }

// DecodeReference returns a decoder of reference items keyed by idField.
func DecodeReference(idField string) func([]byte) ([]pollers.Record, error) {
	kf := referenceKey(idField)
	return func(body []byte) ([]pollers.Record, error) { return decodeWith(body, kf) }
}
