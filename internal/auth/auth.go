// Package auth holds the token sources gridstream uses to call its upstreams and the durable,
// encrypted store their refresh tokens live in.
//
// Three flows exist: client credentials (INGRID), refresh-token rotation after a password
// bootstrap (NET2GRID) and refresh-token rotation after an operator's PKCE login (G-REX). Every
// source renews access tokens before they expire, drops an access token the upstream answered 401
// to, and reports its Health so a refresh token about to expire or already rejected is visible.
// No token, password or client secret ever appears in an error or a log line (DESIGN.md
// invariants 4 and 6).
package auth

import (
	"context"
	"errors"
	"time"

	"golang.org/x/oauth2"
)

// Source hands out access tokens for one upstream identity.
type Source interface {
	// Token returns a valid access token, renewing it when it is close to expiry.
	Token(ctx context.Context) (*oauth2.Token, error)
	// Invalidate drops the current access token because the upstream answered 401 to it, so the
	// next Token call fetches a fresh one.
	Invalidate()
	// Health reports the source's state for readiness, status pages and alerts.
	Health() Health
}

// State is a token source's health state.
type State string

// Health states. Anything but StateOK deserves attention; StateLoginRequired needs an operator.
const (
	StateOK            State = "ok"
	StateExpiring      State = "expiring"
	StateLoginRequired State = "login-required"
	StateError         State = "error"
)

// Health is a token source's non-secret status.
type Health struct {
	Source        string    // upstream name, e.g. "net2grid"
	Subject       string    // non-secret label of the identity, e.g. a hashed user id
	State         State     // ok, expiring, login-required or error
	AccessExpiry  time.Time // expiry of the cached access token; zero when none
	RefreshExpiry time.Time // expiry of the refresh token; zero when unknown or none
	LastError     string    // last failure, free of secrets; empty after a success
}

// Errors callers branch on.
var (
	// ErrLoginRequired means the refresh token is missing, expired or rejected: a person must log
	// in again (NET2GRID password bootstrap, G-REX login command).
	ErrLoginRequired = errors.New("auth: login required")
	// ErrLoginNeedsPerson means the upstream asked for a multi-factor challenge during a password
	// login: it cannot complete unattended.
	ErrLoginNeedsPerson = errors.New("auth: login needs a person (multi-factor challenge)")
)

// Clock returns the current time; tests inject a fake one.
type Clock func() time.Time

func (c Clock) now() time.Time {
	if c == nil {
		return time.Now()
	}
	return c()
}
