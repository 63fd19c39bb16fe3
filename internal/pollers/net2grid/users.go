package net2grid

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gridstream/gridstream/internal/auth"
	"github.com/gridstream/gridstream/internal/publish"
	"github.com/gridstream/gridstream/internal/secret"
)

// DefaultUsersBucket is the JetStream KV bucket of the user registry when none is configured.
const DefaultUsersBucket = "gridstream_net2grid_users"

// Errors callers branch on.
var (
	// ErrUnknownUser means the registry holds no such user.
	ErrUnknownUser = errors.New("net2grid: unknown user")
	// ErrBadEmail means a string is not usable as an end user's e-mail address.
	ErrBadEmail = errors.New("net2grid: not an e-mail address")
)

// UserID is the pseudonymous id of an end user: "u-" and the first 16 hex digits of the
// SHA-256 of the lower-cased, trimmed e-mail address. It is the partition, the registry key,
// the token store's user and the Health subject, so the address itself appears in no subject,
// header, log line or key.
func UserID(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return "u-" + hex.EncodeToString(sum[:8])
}

var userIDRE = regexp.MustCompile(`^u-[0-9a-f]{16}$`)

// IsUserID reports whether s has the form of a UserID.
func IsUserID(s string) bool { return userIDRE.MatchString(s) }

var emailRE = regexp.MustCompile(`^[^@\s,]+@[^@\s,]+$`)

// checkEmail rejects strings that cannot be an address; the error never quotes the input.
func checkEmail(email string) error {
	if len(email) > 320 || !emailRE.MatchString(strings.TrimSpace(email)) {
		return ErrBadEmail
	}
	return nil
}

// Installation is one of a user's installations as the registry remembers it.
type Installation struct {
	ID         string   `json:"id"`
	Primary    bool     `json:"primary,omitempty"`
	Resolution string   `json:"resolution,omitempty"`
	Metrics    []string `json:"metrics,omitempty"`
}

// User is a registry entry: non-secret metadata only. The e-mail address is not kept; the
// refresh token lives encrypted in the auth token store.
type User struct {
	ID            string         `json:"id"`
	AddedAt       time.Time      `json:"added_at"`
	LoginAt       time.Time      `json:"login_at,omitzero"`
	Installations []Installation `json:"installations,omitempty"`
}

// Registry is the list of NET2GRID end users the connector polls, in a JetStream KV bucket
// keyed by UserID. Every replica reads it; operators change it with the users commands.
type Registry struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// OpenRegistry opens (creating if needed) the user registry bucket; bucket defaults to
// DefaultUsersBucket. now may be nil (time.Now).
func OpenRegistry(ctx context.Context, js jetstream.JetStream, bucket string, c publish.KVConfig, now func() time.Time) (*Registry, error) {
	if bucket == "" {
		bucket = DefaultUsersBucket
	}
	kv, err := publish.OpenKV(ctx, js, bucket, "gridstream NET2GRID end users (hashed ids, no addresses)", c)
	if err != nil {
		return nil, fmt.Errorf("net2grid user registry: %w", err)
	}
	return NewRegistry(kv, now), nil
}

// NewRegistry uses an open bucket.
func NewRegistry(kv jetstream.KeyValue, now func() time.Time) *Registry {
	if now == nil {
		now = time.Now
	}
	return &Registry{kv: kv, now: now}
}

// Add registers the user with address email and returns the entry; adding a registered user
// returns the existing entry unchanged.
func (r *Registry) Add(ctx context.Context, email string) (User, error) {
	if err := checkEmail(email); err != nil {
		return User{}, err
	}
	id := UserID(email)
	u := User{ID: id, AddedAt: r.now().UTC()}
	b, _ := json.Marshal(u)
	if _, err := r.kv.Create(ctx, id, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return r.Get(ctx, id)
		}
		return User{}, fmt.Errorf("net2grid add user %s: %w", id, err)
	}
	return u, nil
}

// Put writes an entry (after a login or an installation lookup).
func (r *Registry) Put(ctx context.Context, u User) error {
	if !IsUserID(u.ID) {
		return fmt.Errorf("net2grid put user: %q is not a user id", u.ID)
	}
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("net2grid put user %s: %w", u.ID, err)
	}
	if _, err := r.kv.Put(ctx, u.ID, b); err != nil {
		return fmt.Errorf("net2grid put user %s: %w", u.ID, err)
	}
	return nil
}

// Get returns the entry of id, or ErrUnknownUser.
func (r *Registry) Get(ctx context.Context, id string) (User, error) {
	if !IsUserID(id) {
		return User{}, fmt.Errorf("net2grid get user: %w", ErrUnknownUser)
	}
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return User{}, fmt.Errorf("net2grid get user %s: %w", id, ErrUnknownUser)
	}
	if err != nil {
		return User{}, fmt.Errorf("net2grid get user %s: %w", id, err)
	}
	var u User
	if err := json.Unmarshal(e.Value(), &u); err != nil || u.ID != id {
		return User{}, fmt.Errorf("net2grid get user %s: entry is not a user", id)
	}
	return u, nil
}

// Remove deletes the user given by address or by UserID from the registry and returns its
// id. RemoveUser also forgets the user's tokens; use it unless they are kept on purpose.
func (r *Registry) Remove(ctx context.Context, emailOrID string) (string, error) {
	id := emailOrID
	if !IsUserID(id) {
		if err := checkEmail(emailOrID); err != nil {
			return "", err
		}
		id = UserID(emailOrID)
	}
	if _, err := r.Get(ctx, id); err != nil {
		return "", err
	}
	if err := r.kv.Delete(ctx, id); err != nil {
		return "", fmt.Errorf("net2grid remove user %s: %w", id, err)
	}
	return id, nil
}

// RemoveUser removes a user from the registry and purges its refresh token from the token
// store: a user who leaves (or withdraws consent) leaves no credential behind. Its job
// stops at the connector's next job-list refresh.
func RemoveUser(ctx context.Context, tokens auth.Store, reg *Registry, emailOrID string) error {
	id, err := reg.Remove(ctx, emailOrID)
	if err != nil {
		return err
	}
	if tokens == nil {
		return nil
	}
	if err := tokens.Delete(ctx, storeKey(id)); err != nil {
		return fmt.Errorf("net2grid remove user %s: tokens: %w", id, err)
	}
	return nil
}

// List returns every registered user, ordered by id, reading the bucket in one pass.
func (r *Registry) List(ctx context.Context) ([]User, error) {
	w, err := r.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("net2grid list users: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var out []User
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("net2grid list users: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("net2grid list users: watcher closed")
			}
			if e == nil { // all current values delivered
				slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.ID, b.ID) })
				return out, nil
			}
			var u User
			if err := json.Unmarshal(e.Value(), &u); err != nil || u.ID != e.Key() {
				continue // not an entry this version wrote; never fatal for the others
			}
			out = append(out, u)
		}
	}
}

// UserEntry is one line of a user file: an address and, for a one-off bulk login, a password.
type UserEntry struct {
	Email    string
	Password secret.Value // zero when the line has none
}

// ReadUserFile reads a user list: one user per line, "email" or "email,password" (also
// separated by a tab); blank lines and lines starting with '#' are skipped. Errors name the
// line number, never its content. A file with passwords is for a one-off import: delete it
// afterwards, the connector keeps only refresh tokens.
func ReadUserFile(r io.Reader) ([]UserEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	var out []UserEntry
	seen := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		email, pw, _ := strings.Cut(line, ",")
		if i := strings.IndexByte(line, '\t'); i >= 0 && (i < len(email)) {
			email, pw = line[:i], line[i+1:]
		}
		email = strings.TrimSpace(email)
		if err := checkEmail(email); err != nil {
			return nil, fmt.Errorf("user file line %d: %w", n, err)
		}
		id := UserID(email)
		if seen[id] {
			return nil, fmt.Errorf("user file line %d: user listed twice", n)
		}
		seen[id] = true
		out = append(out, UserEntry{Email: email, Password: secret.New(pw)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("user file: %w", err)
	}
	return out, nil
}
