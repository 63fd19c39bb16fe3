package sandbox

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Fault is what a fake does wrong on one endpoint. Several fields may be set at once; a
// request gets the latency first, then at most one failure.
type Fault struct {
	// Rate is the fraction of requests that fail (0 or 1 means every request while set).
	Rate float64
	// Count limits the fault to the next Count matching requests (0: until cleared).
	Count int
	// Latency delays every request on the endpoint.
	Latency time.Duration
	// Status answers with this status and a JSON error body (e.g. 500, 502, 503).
	Status int
	// RetryAfter is sent as the Retry-After header (with Status, default 429): delta
	// seconds ("3") or an HTTP-date.
	RetryAfter string
	// Timeout holds the request until the client gives up.
	Timeout bool
	// Truncate sends a full Content-Length and then only half of the real body.
	Truncate bool
	// HTML answers 200 with an HTML error page, as a proxy in front of an API does.
	HTML bool
}

// Faults holds the faults injected per endpoint; the zero value injects none.
type Faults struct {
	mu    sync.Mutex
	by    map[string]*Fault
	rnd   *rand.Rand
	Count *Counters // optional: counts "faults.<endpoint>" each time one fires
}

// Set injects f on endpoint (an endpoint name as the fake registers it, or "*" for all).
func (fs *Faults) Set(endpoint string, f Fault) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.by == nil {
		fs.by = make(map[string]*Fault)
	}
	fs.by[endpoint] = &f
}

// Clear removes the fault on endpoint.
func (fs *Faults) Clear(endpoint string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	delete(fs.by, endpoint)
}

// ClearAll removes every fault.
func (fs *Faults) ClearAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.by = nil
}

// pick returns the fault that applies to this request, if any, and its latency.
func (fs *Faults) pick(endpoint string) (fire *Fault, latency time.Duration) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.by[endpoint]
	if f == nil {
		f = fs.by["*"]
	}
	if f == nil {
		return nil, 0
	}
	latency = f.Latency
	if f.Status == 0 && f.RetryAfter == "" && !f.Timeout && !f.Truncate && !f.HTML {
		return nil, latency
	}
	if f.Rate > 0 && f.Rate < 1 {
		if fs.rnd == nil {
			fs.rnd = rand.New(rand.NewPCG(1, 2))
		}
		if fs.rnd.Float64() >= f.Rate {
			return nil, latency
		}
	}
	if f.Count > 0 {
		f.Count--
		if f.Count == 0 {
			delete(fs.by, endpoint)
		}
	}
	c := *f
	return &c, latency
}

// Wrap applies the faults registered for endpoint in front of h.
func (fs *Faults) Wrap(endpoint string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, latency := fs.pick(endpoint)
		if latency > 0 {
			select {
			case <-time.After(latency):
			case <-r.Context().Done():
				return
			}
		}
		if f == nil {
			h.ServeHTTP(w, r)
			return
		}
		if fs.Count != nil {
			fs.Count.Inc("faults." + endpoint)
		}
		switch {
		case f.Timeout:
			<-r.Context().Done()
		case f.HTML:
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body><h1>Maintenance</h1></body></html>"))
		case f.Truncate:
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body[:len(body)/2])
			// Abort the connection so the client sees a short body, as after a reset.
			panic(http.ErrAbortHandler)
		default:
			status := f.Status
			if status == 0 {
				status = http.StatusTooManyRequests
			}
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			WriteJSON(w, status, map[string]any{"status": "error", "message": http.StatusText(status)})
		}
	})
}

// WriteJSON answers status with v encoded as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	if err := jsonEncode(&buf, v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
