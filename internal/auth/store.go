package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gridstream/gridstream/internal/secret"
)

// Store errors callers branch on.
var (
	// ErrNotFound means no tokens are stored under the key: a login is needed.
	ErrNotFound = errors.New("auth: no tokens stored")
	// ErrConflict means the stored revision is not the expected one: another writer saved first.
	ErrConflict = errors.New("auth: stored tokens changed concurrently")
	// ErrDecrypt means stored tokens cannot be decrypted with the configured key. The stored
	// value is left as it is.
	ErrDecrypt = errors.New("auth: cannot decrypt stored tokens (wrong encryption key?)")
)

// Stored is what a token store keeps for one identity. Its JSON form exists only inside the
// KV store's ciphertext.
type Stored struct {
	RefreshToken  secret.Value
	RefreshExpiry time.Time // zero when unknown
	AccessToken   secret.Value
	AccessExpiry  time.Time
	TokenType     string
	UpdatedAt     time.Time
	// LeaseOwner and LeaseUntil mark a refresh in progress: the owner is about to spend the
	// refresh token, so no other source may use it until the owner saves or the lease lapses.
	LeaseOwner string
	LeaseUntil time.Time
}

// Store keeps tokens durably, with compare-and-swap on a revision so that two replicas never
// both spend one refresh token.
type Store interface {
	// Load returns the tokens under key and their revision, or ErrNotFound.
	Load(ctx context.Context, key string) (Stored, uint64, error)
	// Save writes s if the current revision is expectRevision (0: the key must not exist) and
	// returns the new revision, or ErrConflict.
	Save(ctx context.Context, key string, s Stored, expectRevision uint64) (uint64, error)
	// Delete forgets the tokens under key, every revision of them (a user removed for
	// good); a key that does not exist is not an error.
	Delete(ctx context.Context, key string) error
}

// SubjectOf returns a non-secret, stable label for a user id (an e-mail address, say): "u"
// and a sha256 hex prefix. It is the Health subject and the user part of a store key.
func SubjectOf(user string) string {
	sum := sha256.Sum256([]byte(user))
	return "u" + hex.EncodeToString(sum[:16])
}

// StoreKey returns the store key of one identity of one upstream, a valid NATS KV key in which
// no user id appears: "<source>.<SubjectOf(user)>".
func StoreKey(source, user string) string {
	src := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		}
		return '_'
	}, source)
	if src == "" {
		src = "_"
	}
	return src + "." + SubjectOf(user)
}

// MemoryStore is a Store in memory, for tests and single-process demos.
type MemoryStore struct {
	mu   sync.Mutex
	seq  uint64
	vals map[string]memEntry
}

type memEntry struct {
	s   Stored
	rev uint64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{vals: map[string]memEntry{}} }

// Load returns the tokens under key.
func (m *MemoryStore) Load(_ context.Context, key string) (Stored, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.vals[key]
	if !ok {
		return Stored{}, 0, fmt.Errorf("load %s: %w", key, ErrNotFound)
	}
	return e.s, e.rev, nil
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.vals, key)
	return nil
}

// Save writes s under key if its revision is expectRevision.
func (m *MemoryStore) Save(_ context.Context, key string, s Stored, expectRevision uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.vals[key]
	if (!ok && expectRevision != 0) || (ok && e.rev != expectRevision) {
		return 0, fmt.Errorf("save %s at revision %d: %w", key, expectRevision, ErrConflict)
	}
	m.seq++
	m.vals[key] = memEntry{s: s, rev: m.seq}
	return m.seq, nil
}
