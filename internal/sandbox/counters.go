package sandbox

import (
	"maps"
	"sync"
)

// Counters are named counts a test can read: requests per endpoint, violations, tokens
// issued, rejected refreshes.
type Counters struct {
	mu sync.Mutex
	m  map[string]int64
}

// Add adds n to the counter name.
func (c *Counters) Add(name string, n int64) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]int64)
	}
	c.m[name] += n
	c.mu.Unlock()
}

// Inc adds one to the counter name.
func (c *Counters) Inc(name string) { c.Add(name, 1) }

// Get returns the counter name (0 if never counted).
func (c *Counters) Get(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[name]
}

// Snapshot copies every counter.
func (c *Counters) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.m)
}
