package auth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/gridstream/gridstream/internal/secret"
)

// DefaultTokenBucket is the JetStream KV bucket tokens are kept in when none is configured.
const DefaultTokenBucket = "gridstream_tokens"

// envelopeVersion is the version of the encrypted value format.
const envelopeVersion = 1

// KVConfig configures a KVStore.
type KVConfig struct {
	Bucket   string       // DefaultTokenBucket when empty
	Key      secret.Value // 32-byte AES-256 key, hex (64 digits) or base64
	History  int          // revisions kept per key, at least 2 (default 5)
	Replicas int          // bucket replicas when it is created; 1 when zero
	Storage  jetstream.StorageType
}

// KVStore is a Store in a JetStream key-value bucket. Each value is an envelope holding the
// tokens sealed with AES-256-GCM under a random nonce, the key id of the key that sealed them,
// and the KV key as additional data, so a value copied to another key does not open.
type KVStore struct {
	kv    jetstream.KeyValue
	aead  cipher.AEAD
	keyID string
}

// envelope is the stored form of a value.
type envelope struct {
	V     int    `json:"v"`
	Alg   string `json:"alg"`
	KeyID string `json:"kid"`
	Nonce []byte `json:"nonce"`
	Data  []byte `json:"ct"`
}

// storedJSON is the plaintext form of Stored, only ever sealed.
type storedJSON struct {
	RefreshToken  string    `json:"refresh_token,omitempty"`
	RefreshExpiry time.Time `json:"refresh_expiry,omitzero"`
	AccessToken   string    `json:"access_token,omitempty"`
	AccessExpiry  time.Time `json:"access_expiry,omitzero"`
	TokenType     string    `json:"token_type,omitempty"`
	UpdatedAt     time.Time `json:"updated_at,omitzero"`
	LeaseOwner    string    `json:"lease_owner,omitempty"`
	LeaseUntil    time.Time `json:"lease_until,omitzero"`
}

// NewKVStore opens the token bucket, creating it when it does not exist.
func NewKVStore(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KVStore, error) {
	key, err := ParseEncryptionKey(cfg.Key)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("auth: token encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("auth: token encryption key: %w", err)
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultTokenBucket
	}
	if cfg.History == 0 {
		cfg.History = 5
	}
	if cfg.History < 2 {
		return nil, fmt.Errorf("auth: token bucket history %d: must be at least 2", cfg.History)
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "gridstream refresh and access tokens, AES-GCM encrypted",
			History:     uint8(min(cfg.History, 64)),
			Replicas:    max(cfg.Replicas, 1),
			Storage:     cfg.Storage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("auth: open token bucket %s: %w", cfg.Bucket, err)
	}
	return &KVStore{kv: kv, aead: aead, keyID: KeyID(key)}, nil
}

// ParseEncryptionKey decodes a 32-byte key given as 64 hex digits or as base64 (standard or
// URL alphabet, padded or not). Errors never quote the key.
func ParseEncryptionKey(v secret.Value) ([]byte, error) {
	s := strings.TrimSpace(v.Reveal())
	if s == "" {
		return nil, errors.New("auth: token encryption key is empty")
	}
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("auth: token encryption key must be 32 bytes, as 64 hex digits or base64")
}

// KeyID returns a short fingerprint of an encryption key that reveals nothing about the key;
// it is written in each envelope so a wrong key is named as such.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("gridstream token key id\x00"), key...))
	return hex.EncodeToString(sum[:6])
}

var kvKeyRE = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)

// checkKey rejects keys NATS KV refuses; use StoreKey to build keys from user ids.
func checkKey(key string) error {
	if !kvKeyRE.MatchString(key) {
		// The key is not quoted: a caller's mistake could have put a user id in it.
		return errors.New("auth: invalid token store key (build keys with StoreKey)")
	}
	return nil
}

// Load reads and decrypts the tokens under key. A value sealed under another key gives
// ErrDecrypt and revision 0, so nothing can be saved over it by mistake.
func (s *KVStore) Load(ctx context.Context, key string) (Stored, uint64, error) {
	if err := checkKey(key); err != nil {
		return Stored{}, 0, err
	}
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Stored{}, 0, fmt.Errorf("load %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Stored{}, 0, fmt.Errorf("load %s: %w", key, err)
	}
	st, err := s.open(key, e.Value())
	if err != nil {
		return Stored{}, 0, fmt.Errorf("load %s revision %d: %w", key, e.Revision(), err)
	}
	return st, e.Revision(), nil
}

// Save encrypts s and writes it under key if the key's revision is expectRevision.
func (s *KVStore) Save(ctx context.Context, key string, st Stored, expectRevision uint64) (uint64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	val, err := s.seal(key, st)
	if err != nil {
		return 0, fmt.Errorf("save %s: %w", key, err)
	}
	var rev uint64
	if expectRevision == 0 {
		rev, err = s.kv.Create(ctx, key, val)
	} else {
		rev, err = s.kv.Update(ctx, key, val, expectRevision)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("save %s at revision %d: %w", key, expectRevision, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("save %s: %w", key, err)
	}
	return rev, nil
}

// Delete purges key: no revision of the encrypted tokens stays in the bucket's stream.
func (s *KVStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func aad(key string) []byte { return []byte("gridstream-token-v1\x00" + key) }

func (s *KVStore) seal(key string, st Stored) ([]byte, error) {
	plain, err := json.Marshal(storedJSON{
		RefreshToken: st.RefreshToken.Reveal(), RefreshExpiry: st.RefreshExpiry,
		AccessToken: st.AccessToken.Reveal(), AccessExpiry: st.AccessExpiry,
		TokenType: st.TokenType, UpdatedAt: st.UpdatedAt,
		LeaseOwner: st.LeaseOwner, LeaseUntil: st.LeaseUntil,
	})
	if err != nil {
		return nil, errors.New("encode tokens")
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	return json.Marshal(envelope{
		V: envelopeVersion, Alg: "A256GCM", KeyID: s.keyID, Nonce: nonce,
		Data: s.aead.Seal(nil, nonce, plain, aad(key)),
	})
}

func (s *KVStore) open(key string, val []byte) (Stored, error) {
	var env envelope
	if err := json.Unmarshal(val, &env); err != nil || env.V != envelopeVersion || env.Alg != "A256GCM" {
		return Stored{}, fmt.Errorf("%w: not a version %d token envelope", ErrDecrypt, envelopeVersion)
	}
	if env.KeyID != s.keyID {
		return Stored{}, fmt.Errorf("%w: sealed under key id %s, configured key id is %s", ErrDecrypt, env.KeyID, s.keyID)
	}
	if len(env.Nonce) != s.aead.NonceSize() {
		return Stored{}, fmt.Errorf("%w: bad nonce", ErrDecrypt)
	}
	plain, err := s.aead.Open(nil, env.Nonce, env.Data, aad(key))
	if err != nil {
		return Stored{}, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	var sj storedJSON
	if err := json.Unmarshal(plain, &sj); err != nil {
		return Stored{}, fmt.Errorf("%w: decrypted value is not tokens", ErrDecrypt)
	}
	return Stored{
		RefreshToken: secret.New(sj.RefreshToken), RefreshExpiry: sj.RefreshExpiry,
		AccessToken: secret.New(sj.AccessToken), AccessExpiry: sj.AccessExpiry,
		TokenType: sj.TokenType, UpdatedAt: sj.UpdatedAt,
		LeaseOwner: sj.LeaseOwner, LeaseUntil: sj.LeaseUntil,
	}, nil
}
