package sandbox

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// ServersOptions configures Start. Zero values take the demo defaults; port 0 picks a
// free port.
type ServersOptions struct {
	Host                               string // default 127.0.0.1
	INGRIDPort, NET2GRIDPort, GREXPort int
	INGRID                             INGRIDOptions
	NET2GRID                           NET2GRIDOptions
	GREX                               GREXOptions
}

// Servers are the three fakes served over real HTTP.
type Servers struct {
	INGRID   *INGRID
	NET2GRID *NET2GRID
	GREX     *GREX
	// Base URLs, e.g. http://127.0.0.1:41234.
	INGRIDURL, NET2GRIDURL, GREXURL string
	servers                         []*http.Server
}

// Start serves INGRID, NET2GRID and G-REX on their own listeners.
func Start(o ServersOptions) (*Servers, error) {
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	s := &Servers{INGRID: NewINGRID(o.INGRID), NET2GRID: NewNET2GRID(o.NET2GRID), GREX: NewGREX(o.GREX)}
	for _, x := range []struct {
		h    http.Handler
		port int
		url  *string
	}{
		{s.INGRID, o.INGRIDPort, &s.INGRIDURL},
		{s.NET2GRID, o.NET2GRIDPort, &s.NET2GRIDURL},
		{s.GREX, o.GREXPort, &s.GREXURL},
	} {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(x.port)))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("sandbox: listen: %w", err)
		}
		srv := &http.Server{Handler: x.h, ReadHeaderTimeout: 5 * time.Second}
		s.servers = append(s.servers, srv)
		*x.url = "http://" + ln.Addr().String()
		go func() { _ = srv.Serve(ln) }() // returns ErrServerClosed on Close
	}
	return s, nil
}

// Close stops the servers.
func (s *Servers) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range s.servers {
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
}
