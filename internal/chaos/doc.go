// Package chaos holds gridstream's reliability and security suite: a chaos run of the real
// binaries (nats-server, `connector sandbox` with faults, `connector run` SIGKILLed and
// restarted) that checks nothing is lost or duplicated and no quota is broken, and the
// secret scans of logs, spans, metrics, the status page and events. See docs/reliability.md.
//
// Everything lives in the tests; `make chaos` runs the long version.
package chaos
