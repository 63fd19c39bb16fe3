// Package sandbox serves working fakes of the three upstream APIs (GRTgaz INGRID,
// NET2GRID, Grexel G-REX) and their auth servers: the demo runs on them with no
// credentials, and every test talks to them over real HTTP.
//
// The package imports nothing from the client side (auth, pollers, quota, upstream), so
// a misunderstanding of an API cannot be shared by the client and its fake.
package sandbox

import (
	"sync"
	"time"
)

// Clock tells the fakes what time it is, so data evolution and quota windows can be
// tested fast.
type Clock interface{ Now() time.Time }

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// FakeClock is a clock a test moves by hand.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock starts a fake clock at t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{t: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the fake time forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the fake time to t.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
