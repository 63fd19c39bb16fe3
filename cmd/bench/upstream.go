package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gridstream/gridstream/internal/pollers"
)

// The pipeline figure's upstream: an httptest server answering GET /records?from=&to=
// (Unix seconds) with a JSON array holding one record per second of [from, to), each
// record exactly PayloadSize bytes of compact JSON:
//
//	{"id":"r-1767225600","t":"2026-01-01T00:00:00Z","v":1767225600,"pad":"xxx…"}
//
// The answer is built with appends, so the fake costs little of the shared CPU.

// recordJSON appends the PayloadSize-byte record of second s.
func recordJSON(b []byte, s int64) []byte {
	start := len(b)
	b = append(b, `{"id":"r-`...)
	b = strconv.AppendInt(b, s, 10)
	b = append(b, `","t":"`...)
	b = time.Unix(s, 0).UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","v":`...)
	b = strconv.AppendInt(b, s, 10)
	b = append(b, `,"pad":"`...)
	for len(b)-start < PayloadSize-2 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}

func serveRecords(w http.ResponseWriter, r *http.Request) {
	from, err1 := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
	to, err2 := strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
	if err1 != nil || err2 != nil || to < from || to-from > 100_000 {
		http.Error(w, "bad window", http.StatusBadRequest)
		return
	}
	b := make([]byte, 0, (to-from)*(PayloadSize+1)+2)
	b = append(b, '[')
	for s := from; s < to; s++ {
		if s > from {
			b = append(b, ',')
		}
		b = recordJSON(b, s)
	}
	b = append(b, ']')
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// recordsRequest asks for the window's seconds.
func recordsRequest(_ pollers.Partition, w pollers.Window) (string, url.Values) {
	return "/records", url.Values{
		"from": {strconv.FormatInt(w.From.Unix(), 10)},
		"to":   {strconv.FormatInt(w.To.Unix(), 10)},
	}
}

// decodeRecords is a typical decoder: the page is split into its records, each record's
// key and time are read, and the record bytes (already compact) become the event body.
func decodeRecords(body []byte) ([]pollers.Record, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("page: %w", err)
	}
	out := make([]pollers.Record, len(raw))
	for i, r := range raw {
		var head struct {
			ID string    `json:"id"`
			T  time.Time `json:"t"`
		}
		if err := json.Unmarshal(r, &head); err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		out[i] = pollers.Record{Key: head.ID, Time: head.T, Body: r}
	}
	return out, nil
}
